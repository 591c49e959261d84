"""The resumable bulk runner: imagine, wait, press buttons, download; journaled throughout."""

from __future__ import annotations

import collections
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs

from mjasync import (
    APIError,
    AuthenticationError,
    Client,
    ConnectError,
    DecodeError,
    Delivery,
    InvalidRequestError,
    MJError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    RouteNotFoundError,
    Submission,
    Task,
    TaskError,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
    backoff,
    delivery_of,
    file_stem,
)

from ._input import InputError, Job, check_jobs, load_jobs, parse_actions
from ._journal import (
    ACCEPTED,
    FAILED,
    NEVER_SENT,
    REJECTED,
    SENDING,
    SUCCESS,
    UNKNOWN,
    JobRecord,
    Journal,
    StepRecord,
)
from ._reach import Reach, UnreachableError, host_of, unreachable_reason

__all__ = ["BulkEvent", "BulkReport", "BulkRunner", "run_bulk"]

logger = logging.getLogger("mjasync.bulk")

IMAGINE: Final = "imagine"
JOURNAL_NAME: Final = "mjasync-journal.sqlite3"
# Which of several tasks with one state tag to adopt: one that succeeded, else the one
# furthest along of those running; any other (not started, failed) only if alone.
_ADOPT_FIRST = (TaskStatus.SUCCESS, TaskStatus.IN_PROGRESS, TaskStatus.SUBMITTED)
_LIST_ROUTE_MISSING = frozenset({404, 405, 501})
# Every suffix `Client.download` may give a file (images, then videos).
_SAVED_SUFFIXES = (".png", ".jpg", ".webp", ".gif", ".mp4", ".webm", ".mov")
# Refusals that say "not now": sent again after a pause (see _Flow).
_NOT_NOW = (QueueFullError, RateLimitError)
# Answers every other job would get too: the run stops at the first one, and the jobs
# not yet sent stay unsent, so a rerun once the key or the URL is fixed sends them.
_STOPS_RUN = (AuthenticationError, RouteNotFoundError)


@attrs.frozen
class BulkEvent:
    """Something that happened in a bulk run, for progress displays.

    ``kind`` is one of:

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

    kind: str
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


class _JobFailed(Exception):
    """A job cannot finish in this run; *permanent* means a rerun will not retry it."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class _Stopped(Exception):
    """The run is stopping (`BulkRunner._stop` holds why); this job ends where it is."""


class _JobUnknown(Exception):
    """A submit of the job may or may not have created a task."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Flow:
    """How many of this run's tasks may be on the server at once: an adaptive limit.

    Like TCP's congestion window. The limit starts at *ceiling* (the most tasks the
    jobs in flight can have) and every accepted submit raises it by ``1/limit``, about
    one more task per limit's worth of accepts, never above *ceiling*. A queue-full or
    429 answer cuts it to half the tasks in flight, never below 1, once per round:
    refusals of submits sent before the last cut carry no news. A task holds its place
    from its submit until it finishes, so a refused submit goes again when one of this
    run's tasks finishes and frees a place on the server; only when none of them is
    running (the server is full of others' work, or unreachable) does it wait a growing,
    jittered pause. So a ``concurrency`` far above what the server admits costs a few
    refused (unpaid) submits, not minutes of back-off.
    """

    def __init__(self, ceiling: int, backoff: float, cap: float) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0  # places taken: submits on the wire and tasks not yet finished
        self.round = 0
        self._base = backoff
        self._cap = cap
        self._streak = 0
        self._pause_until = 0.0
        self._changed = anyio.Event()
        self._rng = random.Random()

    @property
    def pause(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._pause_until - anyio.current_time())

    def has_room(self) -> bool:
        return self.pause == 0 and self.in_flight < max(1, math.floor(self.limit))

    async def acquire(self) -> int:
        """Take a place, waiting for room; returns the round the submit is sent in."""
        while not self.has_room():
            pause = self.pause
            if pause > 0:
                await anyio.sleep(pause)
            else:
                await self._changed.wait()
        self.in_flight += 1
        return self.round

    def release(self) -> None:
        """Give a place back: a refused or failed submit, or a task that finished."""
        self.in_flight -= 1
        self._notify()

    def accepted(self) -> None:
        """The submit holding a place was accepted: it keeps the place until it finishes."""
        self._streak = 0
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._notify()

    def refused(self, sent_in: int, retry_after: float | None, *, congestion: bool) -> float:
        """A submit (still holding its place) was refused; returns the pause it causes.

        *congestion* is a queue-full or 429 answer (cut the limit); otherwise the server
        was not reached at all (only pause). The pause is 0 while another submit or task
        of this run holds a place: its answer or its end is the signal to try again.
        """
        if sent_in == self.round:
            self.round += 1
            self._streak += 1
            if congestion:
                self.limit = max(1.0, min(self.limit, float(self.in_flight)) / 2.0)
        delay = retry_after or 0.0
        # Alone: no other submit of this run on the wire and none of its tasks running,
        # so no answer or finished task will come to say when to try again.
        alone = self.in_flight <= 1
        if alone or not congestion:
            pause = backoff(self._streak, base=self._base, cap=self._cap, rng=self._rng)
            delay = max(delay, pause)
        if delay > 0:
            self._pause_until = max(self._pause_until, anyio.current_time() + delay)
        return delay

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class _StateIndex:
    """Finds tasks by their ``state`` tag through ``GET /mj/task/list``, when the server has it.

    That list is the only way to learn the id of a task whose submit answer was lost;
    one fetch serves every lookup made within ``max_age`` seconds.
    """

    def __init__(self, client: Client, max_age: float = 1.0) -> None:
        self._client = client
        self._max_age = max_age
        self._available = True
        self._by_tag: dict[str, Task] = {}
        self._fetched = -math.inf
        self._lock = anyio.Lock()
        self._ids: set[str] = set()
        self._tried = -math.inf
        self._fresh = False  # the last listing asked for arrived
        self.used = False

    async def find(self, tag: str, *, since: float = math.inf) -> Task | None:
        """The task tagged *tag* in a listing at most ``max_age`` old, or made after *since*."""
        if not self._available or not tag:
            return None
        async with self._lock:
            now = anyio.current_time()
            # A failed listing is not asked for again at once either: under a flaky
            # server every lost submit would cost another full list with retries.
            stale = now - self._fetched > self._max_age or self._fetched < since
            if stale and (now - self._tried > self._max_age or self._tried < since):
                self._tried = now
                await self._refresh()
        return self._by_tag.get(tag)

    async def absent(self, tag: str, known_ids: set[str], *, since: float) -> bool:
        """True when a fresh listing lacks *tag* yet holds every task id in *known_ids*.

        A listing that shows every task this journal ever created is complete enough
        to trust its silence about the lost one; a capped or partial listing (trueai
        returns only the latest 100) fails that test and proves nothing.
        """
        if not known_ids or await self.find(tag, since=since) is not None:
            return False
        # Only a listing fetched after *since* may prove absence: an older one may
        # predate the lost submit's arrival.
        fresh = self._fresh and self._fetched >= since
        return self._available and fresh and known_ids <= self._ids

    async def _refresh(self) -> None:
        # The listing counts from when it was asked for: a submit that arrives while it
        # is being built may or may not be in it.
        asked = anyio.current_time()
        try:
            tasks = await self._client.list_tasks()
        except APIError as error:
            # A server without the route (a 404/405, new-api's web page) or one that
            # keeps it from this key will answer the same every time: stop asking.
            if (
                error.status in _LIST_ROUTE_MISSING
                or isinstance(error, NotFoundError | AuthenticationError)
                or (
                    delivery_of(error) is Delivery.REJECTED
                    and not isinstance(error, RateLimitError)
                )
            ):
                logger.info(
                    "GET /mj/task/list is not available (%s); lost submits stay unknown",
                    type(error).__name__,
                )
                self._available = False
            else:
                logger.warning("could not list tasks to recover lost submits: %s", error)
            self._fresh = False
            return
        except MJError as error:
            logger.warning("could not list tasks to recover lost submits: %s", error)
            self._fresh = False
            return
        self.used = self._fresh = True
        self._fetched = asked
        self._ids = {task.id for task in tasks}
        best: dict[str, Task] = {}
        for task in tasks:
            if not task.state:
                continue
            current = best.get(task.state)
            if current is None or _adopt_rank(task) < _adopt_rank(current):
                best[task.state] = task
        self._by_tag = best


def _adopt_rank(task: Task) -> int:
    status = task.status
    return _ADOPT_FIRST.index(status) if status in _ADOPT_FIRST else len(_ADOPT_FIRST)


def _unknown_reason(step: str, why: str) -> str:
    return (
        f"{step}: the submit may have reached the server ({why}); "
        "rerun with --resubmit-unknown to send it again"
    )


async def _is_file(path: str | None) -> bool:
    return bool(path) and await anyio.Path(path or "").is_file()


def _delivery(error: Exception) -> str:
    """Whether a failed submit reached the server, as a journal status.

    The one place that decides it, from `mjasync.delivery_of`: ``UNKNOWN`` when a task
    may exist (a timeout, a 5xx, a dropped connection, a garbled answer); ``REJECTED``
    when the server answered and refused this submit for good (a banned prompt, an
    unknown parent task); ``NEVER_SENT`` when no task exists and sending again may
    work: never delivered, caught by the client before sending, refused for now (queue
    full, 429), or refused for the configuration (the key, a base URL with no proxy
    behind it), which a rerun with the configuration fixed sends normally.
    """
    delivery = delivery_of(error)
    if delivery is Delivery.MAYBE_SENT:
        return UNKNOWN
    if delivery is Delivery.NOT_SENT or isinstance(error, (*_NOT_NOW, *_STOPS_RUN)):
        return NEVER_SENT
    return REJECTED


def _pushback(error: BaseException) -> bool:
    """A refusal that is worth sending again after a pause: the server was busy or away."""
    return isinstance(error, QueueFullError | RateLimitError | ConnectError)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


class BulkRunner:
    """Runs many jobs against one `Client`, journaled in SQLite so a rerun resumes.

    Each job: imagine (with its ``state`` tagged ``mjasync:<run>:<job>:<step>:<nonce>``), wait,
    download the grid, then press each action button concurrently, wait and download
    each result. At most *concurrency* jobs are in flight. How many of their tasks may
    be on the server at once adapts to the server's queue-full and 429 answers (see
    `BulkEvent` ``backoff``): a setting above what the server admits costs a few refused
    submits, not long pauses.

    Before anything is sent, every job is checked (`check_jobs`): image files, button
    names and options. One bad job refuses the whole run with an `InputError` listing
    every problem by line.

    Rerunning with the same journal skips finished jobs, waits again on accepted task
    ids, never downloads a file twice and never resends a submit unless the journal
    proves it never reached the server. A submit whose outcome is unknown is first
    looked up by its ``state`` tag (``GET /mj/task/list``, where the server has it),
    then reported as unknown; *resubmit_unknown* sends it again (which may pay twice).

    An answer every other job would get too stops the run at once: the key refused
    (`AuthenticationError`), no midjourney-proxy at the base URL (`RouteNotFoundError`),
    a host that cannot be reached or never answers (`UnreachableError`). The jobs not
    sent are recorded as never sent, so the same run, once the cause is fixed, sends them
    normally.

    Args:
        client: an open `Client`.
        out_dir: where results go, named ``file_stem(task, prefix="<job key>-<step>")``:
            ``fox-imagine-1748339029401828.png``, ``fox-U1-1748339041337243.png``...
        journal: the SQLite journal (default ``<out_dir>/mjasync-journal.sqlite3``).
        actions: buttons for jobs that name none (``"U1,U2"``, ``"all"`` or a list).
        concurrency: jobs in flight at once; their tasks on the server are at most
            *concurrency* times the most buttons a job presses (at least 1 each).
        task_timeout: seconds to wait for one task.
        resubmit_unknown: send again the submits whose outcome is unknown.
        retry_failed: run again the steps that failed (a new, paid task each).
        recover: look lost submits up by ``state`` tag before calling them unknown;
            a submit an earlier run lost is resent only when the server's task list
            holds every task this journal knows of but not its tag.
        settle: seconds an earlier run's lost submit must be old before that check.
        max_submit_attempts: submits of one step refused with queue-full/429 or
            never delivered before the job is given up for this run.
        backoff: the shared pause, in seconds, after a refusal while none of the
            run's tasks is running (it doubles per refusal up to *max_backoff*).
        max_backoff: the longest such pause, in seconds.
        unreachable_timeout: seconds of nothing but failed connections (refused, DNS,
            connect timeout) after which a run that reached the server earlier stops
            with `UnreachableError`; a run that never reached it stops at the first.
        on_event: a plain function called with every `BulkEvent` (progress displays).

    Raises:
        mjasync.InvalidRequestError: an option is out of range, or *actions* names a
            button an imagine grid does not have.
    """

    def __init__(
        self,
        client: Client,
        out_dir: str | Path,
        *,
        journal: str | Path | None = None,
        actions: str | Sequence[str] | None = None,
        concurrency: int = 4,
        task_timeout: float = 600.0,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        recover: bool = True,
        settle: float = 2.0,
        max_submit_attempts: int = 20,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        unreachable_timeout: float = 60.0,
        on_event: Callable[[BulkEvent], object] | None = None,
    ) -> None:
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
        self.client = client
        self.out_dir = Path(out_dir)
        self.journal_path = Path(journal) if journal is not None else self.out_dir / JOURNAL_NAME
        self.actions = parse_actions(actions)
        self.concurrency = concurrency
        self.task_timeout = task_timeout
        self.resubmit_unknown = resubmit_unknown
        self.retry_failed = retry_failed
        self.recover = recover
        self.settle = settle
        self.max_submit_attempts = max_submit_attempts
        self._backoff = (backoff, max_backoff)
        self.unreachable_timeout = unreachable_timeout
        self._reach = Reach(unreachable_timeout)
        self._flow = _Flow(concurrency, backoff, max_backoff)
        self._on_event = on_event
        self._index = _StateIndex(client)
        self._journal: Journal | None = None
        self._requests_at_start = 0
        self._fatal: BaseException | None = None
        self._scope = anyio.CancelScope()
        self._started_at = time.time()
        self._known_ids: set[str] = set()

    # -- plumbing ------------------------------------------------------------------------

    def _emit(self, kind: str, job: Job, step: str | None = None, **fields: Any) -> None:
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

    def _unreachable(self, error: BaseException, reason: str, lasted: float) -> UnreachableError:
        host = host_of(self.client.base_url, error)
        if self._reach.answered:
            when = f"it answered earlier in this run, then refused every attempt for {lasted:.0f} s"
        else:
            when = "it never answered this run"
        msg = (
            f"cannot reach {host}: {reason} ({when}); the run stopped. Nothing was sent to "
            "it, so a rerun submits the remaining jobs normally"
        )
        return UnreachableError(msg, host=host, reason=reason, maybe_sent=False)

    def _silent_host(self, error: BaseException) -> UnreachableError:
        host = host_of(self.client.base_url, error)
        msg = (
            f"no answer from {host}: it takes connections but answered nothing this run, "
            "and a submit timed out; the run stopped. The submits already sent may have "
            "reached it: their jobs are unknown, and a rerun looks them up first"
        )
        return UnreachableError(msg, host=host, reason="no answer", maybe_sent=True)

    @property
    def _requests(self) -> int:
        return self.client.requests_sent - self._requests_at_start

    @property
    def journal(self) -> Journal:
        assert self._journal is not None, "the runner is not running"
        return self._journal

    def _actions_of(self, job: Job) -> tuple[str, ...]:
        return job.actions if job.actions is not None else self.actions

    # -- the run -------------------------------------------------------------------------

    async def run(self, jobs: Iterable[Job] | str | Path) -> BulkReport:
        """Run (or resume) *jobs*: a list of `Job`, or the path of a JSONL/text file.

        Every job is checked first (`check_jobs`); nothing is sent unless all are good.

        Raises:
            mjasync.bulk.InputError: the jobs are malformed, name missing or unreadable
                images or buttons a grid lacks; ``problems`` lists every one by line.
            mjasync.bulk.JournalError: the journal is unusable or disagrees with the input.
            mjasync.AuthenticationError: the server refused the API key (the run stops).
            mjasync.RouteNotFoundError: no midjourney-proxy answers at the base URL (a
                404/405 or a web page for a submit); the run stops, nothing was created.
            mjasync.bulk.UnreachableError: the server could not be reached (see
                *unreachable_timeout*); the run stops.
        """
        started = time.monotonic()
        if isinstance(jobs, str | Path):
            name = str(jobs)
            job_list = await anyio.to_thread.run_sync(load_jobs, jobs)
        else:
            name, job_list = "<jobs>", list(jobs)
        counts = collections.Counter(job.key for job in job_list)
        shared = sorted(key for key, count in counts.items() if count > 1)
        if shared:
            msg = f"two jobs share a key; keys must be unique: {', '.join(shared[:5])}"
            raise InputError(msg)
        # The client's own image limit, so a file it would refuse is refused up front.
        await check_jobs(job_list, name=name, max_image_bytes=self.client.max_image_bytes)
        buttons = max((len(self._actions_of(job)) for job in job_list), default=0)
        self._flow = _Flow(self.concurrency * max(1, buttons), *self._backoff)
        self._reach = Reach(self.unreachable_timeout)
        self._journal = journal = await Journal.open(self.journal_path)
        outcome = "interrupted"
        try:
            await journal.begin_run()
            self._started_at = time.time()
            self._requests_at_start = self.client.requests_sent
            records = await journal.sync_jobs(
                (
                    job.key,
                    job.line,
                    job.prompt,
                    {**job.spec(), "actions": list(self._actions_of(job))},
                )
                for job in job_list
            )
            self._known_ids = {
                step.task_id
                for record in records.values()
                for step in record.steps.values()
                if step.task_id
            }
            results: dict[str, tuple[str, str | None, list[Path]]] = {}
            pending = iter(job_list)

            async def worker() -> None:
                for job in pending:
                    if self._fatal is not None:
                        return
                    results[job.key] = await self._run_job(job, records[job.key])

            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                for _ in range(min(self.concurrency, len(job_list))):
                    group.start_soon(worker)
            if self._fatal is not None:
                outcome = f"stopped: {_describe(self._fatal)}"
                raise self._fatal
            earlier = await journal.earlier_requests()
            report = self._report(job_list, results, started, earlier + self._requests)
            outcome = "ok" if report.ok else "incomplete"
            return report
        finally:
            with anyio.CancelScope(shield=True):
                await journal.end_run(self._requests, outcome)
                await journal.aclose()
            self._journal = None

    def _report(
        self,
        jobs: list[Job],
        results: Mapping[str, tuple[str, str | None, list[Path]]],
        started: float,
        requests_total: int,
    ) -> BulkReport:
        done: list[str] = []
        skipped: list[str] = []
        failed: dict[str, str] = {}
        unknown: dict[str, str] = {}
        files: list[Path] = []
        job_files: dict[str, tuple[Path, ...]] = {}
        for job in jobs:
            status, reason, paths = results[job.key]
            if status in {"done", "skipped"}:
                done.append(job.key)
                files.extend(paths)
                job_files[job.key] = tuple(paths)
                if status == "skipped":
                    skipped.append(job.key)
            elif status == "unknown":
                unknown[job.key] = reason or "submit outcome unknown"
            else:
                failed[job.key] = reason or "failed"
        return BulkReport(
            run_id=self.journal.run_id,
            journal=self.journal_path,
            out_dir=self.out_dir,
            total=len(jobs),
            done=tuple(done),
            skipped=tuple(skipped),
            failed=failed,
            unknown=unknown,
            requests=self._requests,
            requests_total=requests_total,
            files=tuple(files),
            elapsed=time.monotonic() - started,
            lines={job.key: job.line for job in jobs if job.line and job.key in failed | unknown},
            job_files=job_files,
        )

    # -- one job -------------------------------------------------------------------------

    async def _run_job(self, job: Job, record: JobRecord) -> tuple[str, str | None, list[Path]]:
        """Returns (``done``/``skipped``/``failed``/``unknown``, reason, files)."""
        steps = (IMAGINE, *self._actions_of(job))
        finished = [record.steps.get(step) for step in steps]
        if record.status == "done" and all(
            [s is not None and s.status == SUCCESS and await _is_file(s.path) for s in finished]
        ):
            self._emit("job_skipped", job, steps=len(steps))
            return "skipped", None, [Path(s.path) for s in finished if s is not None and s.path]
        if record.status == "failed" and not self.retry_failed:
            reason = f"{record.error} (failed in an earlier run; --retry-failed runs it again)"
            self._emit("job_failed", job, message=reason, steps=len(steps))
            return "failed", reason, []
        self._emit("job_started", job, steps=len(steps))
        try:
            paths = await self._job_steps(job, record, steps)
        except _STOPS_RUN as error:
            self._stop(error)
            return "failed", _describe(error), []
        except _Stopped:
            return "failed", "the run stopped", []
        except _JobUnknown as error:
            await self.journal.set_job(job.key, "unknown", error.reason)
            self._emit("job_unknown", job, message=error.reason)
            return "unknown", error.reason, []
        except _JobFailed as error:
            await self.journal.set_job(
                job.key, "failed" if error.permanent else "pending", error.reason
            )
            self._emit("job_failed", job, message=error.reason)
            return "failed", error.reason, []
        except Exception as error:
            # A bug must cost one job, not the run; the journal still holds every step.
            logger.exception("job %s failed unexpectedly", job.key)
            reason = f"unexpected {_describe(error)}"
            await self.journal.set_job(job.key, "pending", reason)
            self._emit("job_failed", job, message=reason)
            return "failed", reason, []
        await self.journal.set_job(job.key, "done")
        self._emit("job_done", job)
        return "done", None, paths

    async def _job_steps(self, job: Job, record: JobRecord, steps: Sequence[str]) -> list[Path]:
        def imagine(tag: str) -> Awaitable[Submission]:
            images = [
                Path(i) if not i.startswith(("http:", "https:", "data:")) else i for i in job.images
            ]
            return self.client.imagine(job.prompt, images=images, state=tag)

        paths: dict[str, Path] = {}
        for step in steps:
            current = record.steps.get(step)
            if current and current.status == SUCCESS and await _is_file(current.path):
                paths[step] = Path(current.path or "")
        buttons = [step for step in steps[1:] if step not in paths]
        if not buttons and IMAGINE in paths:
            return [paths[step] for step in steps]
        # Even a downloaded grid is waited on again when buttons remain: pressing them
        # needs the finished task's buttons (one batched poll, no new submit).
        grid = await self._step(job, record, IMAGINE, imagine)
        paths[IMAGINE] = await self._download(job, record, IMAGINE, grid)
        problems: list[_JobFailed | _JobUnknown] = []
        stopped: list[str] = []

        async def press(button: str) -> None:
            def submit(tag: str) -> Awaitable[Submission]:
                return self.client.action(grid, button, state=tag)

            try:
                task = await self._step(job, record, button, submit)
                paths[button] = await self._download(job, record, button, task)
            except (_JobFailed, _JobUnknown) as error:
                problems.append(error)
            except _STOPS_RUN as error:
                self._stop(error)
                stopped.append(button)
            except _Stopped:
                stopped.append(button)

        async with anyio.create_task_group() as group:
            for button in buttons:
                group.start_soon(press, button)
        if stopped:
            raise _Stopped
        # An unknown submit outranks a failure: it is the one that needs a human decision.
        for problem in problems:
            if isinstance(problem, _JobUnknown):
                raise problem
        if problems:
            permanent = all(isinstance(p, _JobFailed) and p.permanent for p in problems)
            reason = "; ".join(p.reason for p in problems)
            raise _JobFailed(reason, permanent=permanent)
        return [paths[step] for step in steps]

    # -- one step: submit (or re-attach), wait -------------------------------------------

    async def _step(
        self,
        job: Job,
        record: JobRecord,
        step: str,
        submit: Callable[[str], Awaitable[Submission]],
    ) -> Task:
        current = record.steps.get(step)
        if current is not None and current.status in {FAILED, REJECTED}:
            if not self.retry_failed:
                raise _JobFailed(f"{step}: {current.error}", permanent=True)
            current = None
        if current is not None and current.status in {SENDING, UNKNOWN}:
            found = await self._index.find(current.state_tag) if self.recover else None
            if found is not None:
                await self.journal.set_step(
                    job.key,
                    step,
                    ACCEPTED,
                    task_id=found.id,
                    requests=self._requests,
                    error="recovered by state tag",
                )
                current.status, current.task_id = ACCEPTED, found.id
            elif self.recover and await self._never_arrived(current):
                await self.journal.set_step(
                    job.key,
                    step,
                    NEVER_SENT,
                    requests=self._requests,
                    error="absent from the server's complete task list",
                )
                current = None
            elif self.resubmit_unknown:
                current = None
            else:
                why = current.error or "interrupted between sending and the answer"
                raise _JobUnknown(_unknown_reason(step, why))
        if current is not None and current.status != NEVER_SENT and current.task_id is not None:
            return await self._wait(job, record, step, current.task_id)
        # The task holds its place in the flow until it finishes (see _Flow).
        task_id = await self._submit(job, record, step, submit)
        try:
            return await self._wait(job, record, step, task_id)
        finally:
            self._flow.release()

    async def _never_arrived(self, step: StepRecord) -> bool:
        """Whether an earlier run's lost submit provably created no task.

        Only rows left by an earlier run are judged (the journal lock says their
        writer is gone), and only after *settle* seconds, so that a request still in a
        socket buffer when its process died has been handled by the server.
        """
        if step.status not in {SENDING, UNKNOWN} or step.updated >= self._started_at:
            return False
        age = time.time() - step.updated
        if age < self.settle:
            await anyio.sleep(self.settle - age)
        return await self._index.absent(step.state_tag, self._known_ids, since=anyio.current_time())

    async def _submit(
        self,
        job: Job,
        record: JobRecord,
        step: str,
        submit: Callable[[str], Awaitable[Submission]],
    ) -> str:
        """Submit until accepted; the caller then owns the task's place in the flow."""
        # A fresh nonce per paid intent: after --retry-failed or --resubmit-unknown, a
        # lost answer must not be "recovered" as the earlier task of the same step.
        tag = f"mjasync:{self.journal.run_id}:{job.key}:{step}:{secrets.token_hex(4)}"
        flow = self._flow
        last = ""
        for _ in range(self.max_submit_attempts):
            if not flow.has_room():
                self._emit_flow("task_queued", job, step)
            sent_in = await flow.acquire()
            if self._fatal is not None:
                # The send below is shielded, so it is no checkpoint: without this, a
                # stopping run would go on sending until something else awaited.
                flow.release()
                raise _Stopped
            try:
                status, task_id, error, retry_after = await self._send_once(
                    job.key, step, tag, submit
                )
            except BaseException:
                flow.release()
                raise
            if status == ACCEPTED:
                assert task_id is not None
                flow.accepted()
                record.steps[step] = StepRecord(step, ACCEPTED, task_id, tag)
                self._emit("task_submitted", job, step, message=task_id)
                return task_id
            assert error is not None
            last = _describe(error)
            record.steps[step] = StepRecord(step, status, None, tag, error=last)
            if status == UNKNOWN:
                if isinstance(error, RequestTimeoutError) and not self._reach.answered:
                    # Sent, never answered, and nothing else of this run was either: a
                    # host that takes connections and says nothing. Every further submit
                    # would be one more that may be paid and stays unknown.
                    flow.release()
                    self._stop(self._silent_host(error))
                    raise _JobUnknown(_unknown_reason(step, last))
                found = await self._index.find(tag) if self.recover else None
                if found is None:
                    flow.release()
                    raise _JobUnknown(_unknown_reason(step, last))
                await self.journal.set_step(
                    job.key,
                    step,
                    ACCEPTED,
                    task_id=found.id,
                    requests=self._requests,
                    error="recovered by state tag",
                )
                flow.accepted()
                record.steps[step] = StepRecord(step, ACCEPTED, found.id, tag)
                return found.id
            if isinstance(error, _STOPS_RUN):
                flow.release()
                self._stop(error)
                raise _Stopped
            reason = unreachable_reason(error)
            lasted = self._reach.give_up() if reason is not None else None
            if reason is not None and lasted is not None:
                flow.release()
                self._stop(self._unreachable(error, reason, lasted))
                raise _Stopped
            if status == REJECTED or not _pushback(error):
                flow.release()
                if status == REJECTED:
                    raise _JobFailed(f"{step}: {last}", permanent=True)
                # Refused by the client itself (a bad input, a button the grid lacks):
                # nothing was sent, so a rerun with the input fixed runs it again.
                raise _JobFailed(f"{step}: {last} (nothing was sent)", permanent=False)
            congestion = isinstance(error, QueueFullError | RateLimitError)
            delay = flow.refused(sent_in, retry_after, congestion=congestion)
            flow.release()
            why = (
                "server queue full"
                if isinstance(error, QueueFullError)
                else "rate limited, HTTP 429"
                if congestion
                else "server not reached"
            )
            self._emit_flow("backoff", job, step, message=f"{why} ({last})", delay=delay)
        raise _JobFailed(
            f"{step}: not accepted after {self.max_submit_attempts} attempts ({last}); "
            "a rerun will try again",
            permanent=False,
        )

    def _emit_flow(
        self, kind: str, job: Job, step: str, *, message: str = "", delay: float = 0.0
    ) -> None:
        flow = self._flow
        self._emit(
            kind,
            job,
            step,
            message=message,
            delay=delay,
            limit=max(1, math.floor(flow.limit)),
            in_flight=flow.in_flight,
        )

    async def _send_once(
        self, key: str, step: str, tag: str, submit: Callable[[str], Awaitable[Submission]]
    ) -> tuple[str, str | None, BaseException | None, float | None]:
        """One journaled submit: intent, request, outcome. Returns (status, id, error, retry_after).

        Shielded from cancellation as a whole: Ctrl-C while a submit is on the wire
        would otherwise leave a 'sending' row for a task that may well exist.
        """
        journal = self.journal
        retry_after: float | None = None
        task_id: str | None = None
        error: BaseException | None = None
        with anyio.CancelScope(shield=True):
            await journal.step_sending(key, step, tag, self._requests)
            try:
                # The runner paces itself (_Flow): a queue-full or 429 answer comes back
                # at once instead of being waited through by the client's gate, which
                # still pauses the client's other submits.
                with self.client.submit_gate.bypass():
                    submission = await submit(tag)
            except Exception as failed:
                status, error = _delivery(failed), failed
                if isinstance(failed, RateLimitError):
                    retry_after = failed.retry_after
                if isinstance(failed, APIError):
                    self._reach.answer()
            else:
                self._reach.answer()
                task_id = submission.task_id
                if task_id is None:
                    status = UNKNOWN
                    error = DecodeError(f"accepted (code {submission.code}) without a task id")
                else:
                    status = ACCEPTED
            await journal.set_step(
                key,
                step,
                status,
                requests=self._requests,
                task_id=task_id,
                error=_describe(error) if error is not None else None,
            )
        return status, task_id, error, retry_after

    async def _wait(self, job: Job, record: JobRecord, step: str, task_id: str) -> Task:
        current = record.steps.get(step)

        def progress(task: Task) -> None:
            self._reach.answer()
            self._emit("task_progress", job, step, task=task)

        try:
            task: Task = await self.client.await_task(
                task_id, timeout=self.task_timeout, on_progress=progress
            )
        except MJError as error:
            reason = f"{step} (task {task_id}): {_describe(error)}"
            if isinstance(error, _STOPS_RUN):
                raise
            if isinstance(error, TaskTimeoutError):
                raise _JobFailed(f"{reason}; a rerun keeps waiting", permanent=False) from None
            if isinstance(error, TaskError | TaskNotFoundError):
                # FAILURE, CANCEL, MODAL, or a task the server forgot: waiting again won't help.
                await self.journal.set_step(
                    job.key, step, FAILED, requests=self._requests, error=_describe(error)
                )
                if current is not None:
                    current.status, current.error = FAILED, _describe(error)
                raise _JobFailed(reason, permanent=True) from None
            raise _JobFailed(f"{reason}; a rerun waits again", permanent=False) from None
        self._reach.answer()
        self._emit("task_finished", job, step, task=task)
        if current is None or current.status != SUCCESS:
            await self.journal.set_step(
                job.key, step, SUCCESS, task_id=task.id, requests=self._requests
            )
            record.steps[step] = StepRecord(
                step, SUCCESS, task.id, current.state_tag if current else "", path=None
            )
        return task

    async def _download(self, job: Job, record: JobRecord, step: str, task: Task) -> Path:
        current = record.steps[step]
        if current.path and await _is_file(current.path):
            return Path(current.path)
        try:
            name = await self._file_name(job, step, task)
            path = await self.client.download(task, self.out_dir, filename=name)
        except AuthenticationError:
            raise
        except MJError as error:
            msg = f"{step}: downloading task {task.id} failed ({_describe(error)}); rerun to retry"
            raise _JobFailed(msg, permanent=False) from None
        await self.journal.set_path(job.key, step, str(path))
        current.path = str(path)
        self._emit("downloaded", job, step, task=task, message=str(path))
        return path

    async def _file_name(self, job: Job, step: str, task: Task) -> str:
        """``file_stem(task, prefix="<key>-<step>")``: ``fox-U1-1748339029401828``.

        Journals of mjasync 0.1 named files ``<key>-<step>`` and record the path, so a
        rerun finds them; only a file saved just before a crash, whose path the journal
        never got, is looked for under that old name, so it is not downloaded again.
        """
        legacy = f"{job.key}-{step}"
        for suffix in _SAVED_SUFFIXES:
            if await anyio.Path(self.out_dir / f"{legacy}{suffix}").is_file():
                return legacy
        return file_stem(task, prefix=legacy)


async def run_bulk(
    client: Client,
    jobs: Iterable[Job] | str | Path,
    out_dir: str | Path,
    *,
    journal: str | Path | None = None,
    actions: str | Sequence[str] | None = None,
    concurrency: int = 4,
    task_timeout: float = 600.0,
    resubmit_unknown: bool = False,
    retry_failed: bool = False,
    recover: bool = True,
    settle: float = 2.0,
    max_submit_attempts: int = 20,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    unreachable_timeout: float = 60.0,
    on_event: Callable[[BulkEvent], object] | None = None,
) -> BulkReport:
    """Run (or resume) a bulk job: ``BulkRunner(client, out_dir, ...).run(jobs)``.

    Every argument is `BulkRunner`'s; *jobs* is a list of `Job` or a JSONL/text file.

    Raises:
        mjasync.bulk.InputError: a bad job, before anything is sent (``problems``
            lists each by line).
        mjasync.bulk.JournalError: the journal is unusable or disagrees with the input.
        mjasync.InvalidRequestError: an option is out of range.
        mjasync.AuthenticationError: the server refused the API key (the run stops).
        mjasync.RouteNotFoundError: no midjourney-proxy API at the base URL (the run stops).
        mjasync.bulk.UnreachableError: the server cannot be reached (the run stops).
    """
    runner = BulkRunner(
        client,
        out_dir,
        journal=journal,
        actions=actions,
        concurrency=concurrency,
        task_timeout=task_timeout,
        resubmit_unknown=resubmit_unknown,
        retry_failed=retry_failed,
        recover=recover,
        settle=settle,
        max_submit_attempts=max_submit_attempts,
        backoff=backoff,
        max_backoff=max_backoff,
        unreachable_timeout=unreachable_timeout,
        on_event=on_event,
    )
    return await runner.run(jobs)
