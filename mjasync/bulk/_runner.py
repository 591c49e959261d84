"""The resumable bulk runner: imagine, wait, press buttons, download; journaled throughout."""

from __future__ import annotations

import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import attrs

from .._client import Client
from .._errors import (
    APIError,
    AuthenticationError,
    ButtonNotFoundError,
    ConnectError,
    DecodeError,
    InvalidRequestError,
    MJError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    SubmitRejectedError,
    TaskError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from .._models import Submission, Task, TaskStatus
from .._responses import read_body
from .._serde import decode_tasks
from .._transport import Response
from ._input import Job, load_jobs, parse_actions
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

__all__ = ["BulkEvent", "BulkReport", "BulkRunner", "run_bulk"]

logger = logging.getLogger("mjasync.bulk")

IMAGINE: Final = "imagine"
JOURNAL_NAME: Final = "mjasync-journal.sqlite3"
_STATUS_RANK: dict[str, int] = {
    TaskStatus.SUCCESS: 0,
    TaskStatus.IN_PROGRESS: 1,
    TaskStatus.SUBMITTED: 2,
}
_LIST_ROUTE_MISSING = frozenset({404, 405, 501})


@attrs.frozen
class BulkEvent:
    """Something that happened in a bulk run, for progress displays.

    ``kind`` is one of ``job_started``, ``job_done``, ``job_failed``, ``job_unknown``,
    ``job_skipped`` (finished in an earlier run), ``task_submitted``, ``task_progress``,
    ``task_finished``, ``downloaded`` and ``backoff`` (the server pushed back: queue full
    or 429). ``step`` is ``"imagine"`` or a button name; ``task`` the latest snapshot.
    """

    kind: str
    job: Job
    step: str | None = None
    task: Task | None = None
    message: str = ""
    steps: int = 0


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
        }


class _JobFailed(Exception):
    """A job cannot finish in this run; *permanent* means a rerun will not retry it."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class _JobUnknown(Exception):
    """A submit of the job may or may not have created a task."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Backpressure:
    """One shared pause for every submitter after queue-full or 429 answers.

    A full queue is a property of the server, not of one job: once one submit is
    refused, sending the others at once would only be refused too.
    """

    def __init__(self, base: float, cap: float) -> None:
        self._base = base
        self._cap = cap
        self._until = 0.0
        self._streak = 0
        self._rng = random.Random()

    async def wait(self) -> None:
        # The deadline may move while we sleep (another refusal), so check it again after.
        for _ in range(1000):
            delay = self._until - anyio.current_time()
            if delay <= 0:
                return
            await anyio.sleep(delay)

    def push_back(self, retry_after: float | None) -> float:
        self._streak += 1
        ceiling = min(self._cap, self._base * 2.0 ** (self._streak - 1))
        delay = max(retry_after or 0.0, ceiling * (0.5 + self._rng.random() / 2))
        self._until = max(self._until, anyio.current_time() + delay)
        return delay

    def ok(self) -> None:
        self._streak = 0


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
        self.used = False

    async def find(self, tag: str) -> Task | None:
        if not self._available or not tag:
            return None
        async with self._lock:
            if anyio.current_time() - self._fetched > self._max_age:
                await self._refresh()
        return self._by_tag.get(tag)

    async def absent(self, tag: str, known_ids: set[str]) -> bool:
        """True when a fresh listing lacks *tag* yet holds every task id in *known_ids*.

        A listing that shows every task this journal ever created is complete enough
        to trust its silence about the lost one; a capped or partial listing (trueai
        returns only the latest 100) fails that test and proves nothing.
        """
        if not known_ids or await self.find(tag) is not None:
            return False
        return self._available and self.used and known_ids <= self._ids

    async def _refresh(self) -> None:
        where = "GET /task/list"

        def parse(response: Response) -> list[Task]:
            body = read_body(response, where)
            return decode_tasks(body if body is not None else [])

        try:
            # A private call on purpose: listing every task is only worth it for recovery.
            tasks = await self._client._request("GET", "/task/list", parse)
        except APIError as error:
            if error.status in _LIST_ROUTE_MISSING or isinstance(error, NotFoundError):
                logger.info("this server has no GET /mj/task/list; lost submits stay unknown")
                self._available = False
            else:
                logger.warning("could not list tasks to recover lost submits: %s", error)
            return
        except MJError as error:
            logger.warning("could not list tasks to recover lost submits: %s", error)
            return
        self.used = True
        self._fetched = anyio.current_time()
        self._ids = {task.id for task in tasks}
        best: dict[str, Task] = {}
        for task in tasks:
            if not task.state:
                continue
            current = best.get(task.state)
            if current is None or _STATUS_RANK.get(task.status, 9) < _STATUS_RANK.get(
                current.status, 9
            ):
                best[task.state] = task
        self._by_tag = best


def _unknown_reason(step: str, why: str) -> str:
    return (
        f"{step}: the submit may have reached the server ({why}); "
        "rerun with --resubmit-unknown to send it again"
    )


async def _is_file(path: str | None) -> bool:
    return bool(path) and await anyio.Path(path or "").is_file()


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


class BulkRunner:
    """Runs many jobs against one `Client`, journaled in SQLite so a rerun resumes.

    Each job: imagine (with its ``state`` tagged ``mjasync:<run>:<job>:<step>:<nonce>``), wait,
    download the grid, then press each action button concurrently, wait and download
    each result. At most *concurrency* jobs are in flight; queue-full and 429 answers
    pause every submitter with a shared, growing backoff.

    Rerunning with the same journal skips finished jobs, waits again on accepted task
    ids, never downloads a file twice and never resends a submit unless the journal
    proves it never reached the server. A submit whose outcome is unknown is first
    looked up by its ``state`` tag (``GET /mj/task/list``, where the server has it),
    then reported as unknown; *resubmit_unknown* sends it again (which may pay twice).

    Args:
        client: an open `Client`.
        out_dir: where images go, as ``<job key>-imagine.png``, ``<job key>-U1.png``...
        journal: the SQLite journal (default ``<out_dir>/mjasync-journal.sqlite3``).
        actions: buttons for jobs that name none (``"U1,U2"``, ``"all"`` or a list).
        concurrency: jobs in flight at once.
        task_timeout: seconds to wait for one task.
        resubmit_unknown: send again the submits whose outcome is unknown.
        retry_failed: run again the steps that failed (a new, paid task each).
        recover: look lost submits up by ``state`` tag before calling them unknown;
            a submit an earlier run lost is resent only when the server's task list
            holds every task this journal knows of but not its tag.
        settle: seconds an earlier run's lost submit must be old before that check.
        max_submit_attempts: submits of one step refused with queue-full/429 or
            never delivered before the job is given up for this run.
        backoff, max_backoff: the shared pause after a refusal, in seconds.
        on_event: a plain function called with every `BulkEvent` (progress displays).
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
        on_event: Callable[[BulkEvent], object] | None = None,
    ) -> None:
        if concurrency < 1:
            msg = f"concurrency must be >= 1, got {concurrency}"
            raise InvalidRequestError(msg)
        if task_timeout <= 0 or max_submit_attempts < 1:
            msg = "task_timeout must be > 0 and max_submit_attempts >= 1"
            raise InvalidRequestError(msg)
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
        self._gate = _Backpressure(backoff, max_backoff)
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

        Raises:
            mjasync.bulk.InputError: the jobs file is malformed.
            mjasync.bulk.JournalError: the journal is unusable or disagrees with the input.
            mjasync.AuthenticationError: the server refused the API key (the run stops).
        """
        started = time.monotonic()
        job_list = load_jobs(jobs) if isinstance(jobs, str | Path) else list(jobs)
        keys = [job.key for job in job_list]
        if len(set(keys)) != len(keys):
            msg = "two jobs share a key; keys must be unique"
            raise InvalidRequestError(msg)
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
        for job in jobs:
            status, reason, paths = results[job.key]
            if status in {"done", "skipped"}:
                done.append(job.key)
                files.extend(paths)
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
        except AuthenticationError as error:
            self._stop(error)
            return "failed", _describe(error), []
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

        async def press(button: str) -> None:
            def submit(tag: str) -> Awaitable[Submission]:
                return self.client.action(grid, button, state=tag)

            try:
                task = await self._step(job, record, button, submit)
                paths[button] = await self._download(job, record, button, task)
            except (_JobFailed, _JobUnknown) as error:
                problems.append(error)
            except AuthenticationError as error:
                self._stop(error)

        async with anyio.create_task_group() as group:
            for button in buttons:
                group.start_soon(press, button)
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
        if current is None or current.status == NEVER_SENT or current.task_id is None:
            task_id = await self._submit(job, record, step, submit)
        else:
            task_id = current.task_id
        return await self._wait(job, record, step, task_id)

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
        return await self._index.absent(step.state_tag, self._known_ids)

    async def _submit(
        self,
        job: Job,
        record: JobRecord,
        step: str,
        submit: Callable[[str], Awaitable[Submission]],
    ) -> str:
        # A fresh nonce per paid intent: after --retry-failed or --resubmit-unknown, a
        # lost answer must not be "recovered" as the earlier task of the same step.
        tag = f"mjasync:{self.journal.run_id}:{job.key}:{step}:{secrets.token_hex(4)}"
        last = ""
        for _ in range(self.max_submit_attempts):
            await self._gate.wait()
            status, task_id, error, retry_after = await self._send_once(job.key, step, tag, submit)
            if status == ACCEPTED:
                assert task_id is not None
                self._gate.ok()
                record.steps[step] = StepRecord(step, ACCEPTED, task_id, tag)
                self._emit("task_submitted", job, step, message=task_id)
                return task_id
            assert error is not None
            last = _describe(error)
            record.steps[step] = StepRecord(step, status, None, tag, error=last)
            if isinstance(error, AuthenticationError):
                raise error
            if status == REJECTED:
                raise _JobFailed(f"{step}: {last}", permanent=True)
            if status == UNKNOWN:
                found = await self._index.find(tag) if self.recover else None
                if found is None:
                    raise _JobUnknown(_unknown_reason(step, last))
                await self.journal.set_step(
                    job.key,
                    step,
                    ACCEPTED,
                    task_id=found.id,
                    requests=self._requests,
                    error="recovered by state tag",
                )
                record.steps[step] = StepRecord(step, ACCEPTED, found.id, tag)
                return found.id
            delay = self._gate.push_back(retry_after)
            self._emit("backoff", job, step, message=f"{last}; pausing submits {delay:.1f}s")
        raise _JobFailed(
            f"{step}: not accepted after {self.max_submit_attempts} attempts ({last}); "
            "a rerun will try again",
            permanent=False,
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
                submission = await submit(tag)
            except (QueueFullError, RateLimitError) as refused:
                if isinstance(refused, RateLimitError):
                    retry_after = refused.retry_after
                status, error = NEVER_SENT, refused
            except (ConnectError, AuthenticationError) as refused:
                status, error = NEVER_SENT, refused
            except (SubmitRejectedError, InvalidRequestError, ButtonNotFoundError) as refused:
                # Refused by code or caught before sending: no task exists, and none will.
                status, error = REJECTED, refused
            except Exception as lost:
                # A timeout, 5xx, dropped connection or garbled answer after sending.
                status, error = UNKNOWN, lost
            else:
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
            self._emit("task_progress", job, step, task=task)

        try:
            task: Task = await self.client.await_task(
                task_id, timeout=self.task_timeout, on_progress=progress
            )
        except MJError as error:
            reason = f"{step} (task {task_id}): {_describe(error)}"
            if isinstance(error, AuthenticationError):
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
            path = await self.client.download(task, self.out_dir, filename=f"{job.key}-{step}")
        except AuthenticationError:
            raise
        except MJError as error:
            msg = f"{step}: downloading task {task.id} failed ({_describe(error)}); rerun to retry"
            raise _JobFailed(msg, permanent=False) from None
        await self.journal.set_path(job.key, step, str(path))
        current.path = str(path)
        self._emit("downloaded", job, step, task=task, message=str(path))
        return path


async def run_bulk(
    client: Client,
    jobs: Iterable[Job] | str | Path,
    out_dir: str | Path,
    **options: Any,
) -> BulkReport:
    """Run (or resume) a bulk job: ``BulkRunner(client, out_dir, **options).run(jobs)``."""
    return await BulkRunner(client, out_dir, **options).run(jobs)
