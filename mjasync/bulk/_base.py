"""What every part of a bulk run shares: its settings, its per-run state, and how a job ends.

`BulkRunner` is assembled from mixins, one job each (`Recovery`, `JournaledSubmit`,
`Results`, the runner itself), over `RunnerBase`: the options, the state of the run in
progress and the plumbing they all call (events, stopping the run, the request count).
A job's steps end early by raising `JobFailed`, `JobUnknown` or `Stopped`, which the
runner records.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio

from mjasync import (
    AuthenticationError,
    Client,
    InvalidRequestError,
    QueueFullError,
    RateLimitError,
    RouteNotFoundError,
)

from ._events import BulkEvent, EventKind
from ._flow import Flow
from ._input import Job
from ._journal import Journal
from ._reach import Reach

__all__ = [
    "IMAGINE",
    "NOT_NOW",
    "STOPS_RUN",
    "JobFailed",
    "JobUnknown",
    "RunnerBase",
    "Stopped",
    "check_options",
    "describe",
    "unknown_reason",
]

logger = logging.getLogger("mjasync.bulk")

IMAGINE: Final = "imagine"
# Refusals that say "not now": sent again after a pause (see Flow).
NOT_NOW = (QueueFullError, RateLimitError)
# Answers every other job would get too: the run stops at the first one, and the jobs
# not yet sent stay unsent, so a rerun once the key or the URL is fixed sends them.
STOPS_RUN = (AuthenticationError, RouteNotFoundError)


class JobFailed(Exception):
    """A job cannot finish in this run; *permanent* means a rerun will not retry it."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Stopped(Exception):
    """The run is stopping (`RunnerBase._stop` holds why); this job ends where it is."""


class JobUnknown(Exception):
    """A submit of the job may or may not have created a task."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unknown_reason(step: str, why: str) -> str:
    return (
        f"{step}: the submit may have reached the server ({why}); "
        "rerun with --resubmit-unknown to send it again"
    )


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_options(
    *,
    concurrency: int,
    task_timeout: float,
    max_submit_attempts: int,
    settle: float,
    backoff: float,
    max_backoff: float,
    unreachable_timeout: float,
) -> None:
    """Refuse `BulkRunner` options out of range, every one named in one error.

    Raises:
        mjasync.InvalidRequestError: ``"concurrency must be >= 1, got 0; ..."``.
    """
    problems = [
        f"{name} must be {rule}, got {value!r}"
        for name, value, ok, rule in (
            ("concurrency", concurrency, _is_int(concurrency) and concurrency >= 1, ">= 1"),
            (
                "task_timeout",
                task_timeout,
                _is_number(task_timeout) and task_timeout > 0,
                "> 0",
            ),
            (
                "max_submit_attempts",
                max_submit_attempts,
                _is_int(max_submit_attempts) and max_submit_attempts >= 1,
                ">= 1",
            ),
            ("settle", settle, _is_number(settle) and settle >= 0, ">= 0"),
            ("backoff", backoff, _is_number(backoff) and backoff > 0, "> 0"),
            (
                "max_backoff",
                max_backoff,
                _is_number(max_backoff) and max_backoff >= backoff,
                ">= backoff",
            ),
            (
                "unreachable_timeout",
                unreachable_timeout,
                _is_number(unreachable_timeout) and unreachable_timeout >= 0,
                ">= 0",
            ),
        )
        if not ok
    ]
    if problems:
        raise InvalidRequestError("; ".join(problems))


class RunnerBase:
    """The settings and run state `BulkRunner`'s parts share (see `BulkRunner`)."""

    client: Client
    out_dir: Path
    actions: tuple[str, ...]
    recover: bool
    resubmit_unknown: bool
    retry_failed: bool
    settle: float
    max_submit_attempts: int
    task_timeout: float
    # The run in progress (set by BulkRunner.run).
    _flow: Flow
    _reach: Reach
    _journal: Journal | None
    _fatal: BaseException | None
    _scope: anyio.CancelScope
    _requests_at_start: int
    _started_at: float
    _known_ids: set[str]
    _on_event: Callable[[BulkEvent], object] | None

    def _emit(self, kind: EventKind, job: Job, step: str | None = None, **fields: Any) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(BulkEvent(kind, job, step, **fields))
        except Exception:
            # A broken progress display must not break (or half-journal) the run.
            logger.exception("bulk on_event callback failed")

    def _stop(self, error: BaseException) -> None:
        """Stop the whole run: every other job would be refused the same way."""
        if self._fatal is None:
            self._fatal = error
        self._scope.cancel()

    @property
    def _requests(self) -> int:
        return self.client.requests_sent - self._requests_at_start

    @property
    def journal(self) -> Journal:
        """The journal of the run in progress."""
        assert self._journal is not None, "the runner is not running"
        return self._journal
