"""What a bulk run tells as it goes (`BulkEvent`) and how it ended (`BulkReport`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from mjasync import Task

from ._input import Job

__all__ = ["BulkEvent", "BulkReport", "EventKind", "JobOutcome"]

EventKind = Literal[
    "job_started",
    "job_skipped",
    "job_done",
    "job_failed",
    "job_unknown",
    "task_queued",
    "task_submitted",
    "task_progress",
    "task_finished",
    "downloaded",
    "backoff",
]
"""What a `BulkEvent` reports (each kind is described there)."""

JobOutcome = Literal["done", "skipped", "failed", "unknown"]
"""How one job ended in a run: ``skipped`` is done in an earlier run."""


@attrs.frozen
class BulkEvent:
    """Something that happened in a bulk run, for progress displays.

    ``kind`` (an `EventKind`) is one of:

    - ``job_started``: the job begins (``steps``: how many tasks it has: imagine and
      its buttons); ``job_skipped``: finished in an earlier run, nothing to do.
    - ``job_done``, ``job_failed``, ``job_unknown``: how the job ended this run;
      ``message`` says why it failed or is unknown.
    - ``task_queued``: a submit waits for room: this run already has ``limit`` tasks on
      the server (``in_flight``), the most the server admitted lately.
    - ``task_submitted``: accepted (``message``: the task id); ``task_progress``: a
      changed snapshot (``task``); ``task_finished``: it succeeded (``task``).
    - ``downloaded``: a result is saved (``message``: the path).
    - ``backoff``: the server refused a submit (queue full, 429) or could not be
      reached; ``message`` says which (``"server queue full (...)"``, ``"rate limited,
      HTTP 429 (...)"``, ``"server not reached (...)"``), ``delay`` is how long every
      submit now pauses in seconds (0: until one of this run's tasks finishes),
      ``limit`` the new limit.

    ``job`` is the `Job` (its ``key`` and input ``line``), ``step`` is ``"imagine"`` or
    a button name (None for job events), ``task`` the latest snapshot, if any.
    """

    kind: EventKind
    job: Job
    step: str | None = None
    task: Task | None = None
    message: str = ""
    steps: int = 0
    delay: float = 0.0
    limit: int = 0
    in_flight: int = 0


@attrs.frozen
class BulkReport:
    """How a bulk run ended.

    Attributes:
        run_id: the journal's run id (the same for every resume of one journal).
        done: keys of the jobs that are finished, this run or an earlier one.
        skipped: the subset of ``done`` that an earlier run had already finished.
        failed: key -> reason, for jobs that failed (permanently, or for now: the reason
            says when a rerun will try again).
        unknown: key -> reason, for jobs with a submit whose outcome is unknown; they
            are not resubmitted unless asked (``resubmit_unknown``).
        requests: HTTP requests this run sent (retries and polls included).
        requests_total: the same, summed over every run of the journal.
        files: every downloaded image of the done jobs.
        lines: key -> input line, for the failed and unknown jobs read from a file.
        job_files: key -> that job's files (imagine first, then its buttons), for the
            done jobs; file names are ``<key>-<step>-<task id>`` (see `BulkRunner`).
    """

    run_id: str
    journal: Path
    out_dir: Path
    total: int
    done: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: Mapping[str, str]
    unknown: Mapping[str, str]
    requests: int
    requests_total: int
    files: tuple[Path, ...]
    elapsed: float
    lines: Mapping[str, int] = attrs.field(factory=dict)
    job_files: Mapping[str, tuple[Path, ...]] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """Every job is done."""
        return not self.failed and not self.unknown and len(self.done) == self.total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` output)."""
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "journal": str(self.journal),
            "out_dir": str(self.out_dir),
            "total": self.total,
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": dict(self.failed),
            "unknown": dict(self.unknown),
            "requests": self.requests,
            "requests_total": self.requests_total,
            "files": [str(path) for path in self.files],
            "elapsed": round(self.elapsed, 3),
            "lines": dict(self.lines),
            "job_files": {key: [str(p) for p in paths] for key, paths in self.job_files.items()},
        }
