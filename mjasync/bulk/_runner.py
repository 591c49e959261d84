"""The resumable bulk runner: imagine, wait, press buttons, download; journaled throughout.

`BulkRunner` runs the jobs and each job's steps; its parts live beside it: what they
share (`_base`), the journaled submit (`_submit`), finding lost submits (`_recovery`),
waiting and downloading (`_results`), the pacing (`_flow`), reaching the server
(`_reach`), the events and the report (`_events`), the journal (`_journal`) and the
input (`_input`).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from mjasync import Client, Submission, Task

from ._base import (
    IMAGINE,
    STOPS_RUN,
    JobFailed,
    JobUnknown,
    Stopped,
    check_options,
    describe,
    logger,
)
from ._events import BulkEvent, BulkReport, JobOutcome
from ._flow import Flow
from ._input import InputError, Job, check_jobs, load_jobs, parse_actions
from ._journal import (
    FAILED,
    NEVER_SENT,
    REJECTED,
    SENDING,
    SUCCESS,
    UNKNOWN,
    JobRecord,
    Journal,
)
from ._reach import Reach
from ._recovery import StateIndex
from ._results import Results, is_file
from ._submit import JournaledSubmit

__all__ = ["BulkRunner", "run_bulk"]

JOURNAL_NAME: Final = "mjasync-journal.sqlite3"


class BulkRunner(Results, JournaledSubmit):
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
        check_options(
            concurrency=concurrency,
            task_timeout=task_timeout,
            max_submit_attempts=max_submit_attempts,
            settle=settle,
            backoff=backoff,
            max_backoff=max_backoff,
            unreachable_timeout=unreachable_timeout,
        )
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
        self._flow = Flow(concurrency, backoff, max_backoff)
        self._on_event = on_event
        self._index = StateIndex(client)
        self._journal: Journal | None = None
        self._requests_at_start = 0
        self._fatal: BaseException | None = None
        self._scope = anyio.CancelScope()
        self._started_at = time.time()
        self._known_ids: set[str] = set()

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
        self._flow = Flow(self.concurrency * max(1, buttons), *self._backoff)
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
            results: dict[str, tuple[JobOutcome, str | None, list[Path]]] = {}
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
                outcome = f"stopped: {describe(self._fatal)}"
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
        results: Mapping[str, tuple[JobOutcome, str | None, list[Path]]],
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

    async def _run_job(
        self, job: Job, record: JobRecord
    ) -> tuple[JobOutcome, str | None, list[Path]]:
        """Returns (``done``/``skipped``/``failed``/``unknown``, reason, files)."""
        steps = (IMAGINE, *self._actions_of(job))
        finished = [record.steps.get(step) for step in steps]
        if record.status == "done" and all(
            [s is not None and s.status == SUCCESS and await is_file(s.path) for s in finished]
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
        except STOPS_RUN as error:
            self._stop(error)
            return "failed", describe(error), []
        except Stopped:
            return "failed", "the run stopped", []
        except JobUnknown as error:
            await self.journal.set_job(job.key, "unknown", error.reason)
            self._emit("job_unknown", job, message=error.reason)
            return "unknown", error.reason, []
        except JobFailed as error:
            await self.journal.set_job(
                job.key, "failed" if error.permanent else "pending", error.reason
            )
            self._emit("job_failed", job, message=error.reason)
            return "failed", error.reason, []
        except Exception as error:
            # A bug must cost one job, not the run; the journal still holds every step.
            logger.exception("job %s failed unexpectedly", job.key)
            reason = f"unexpected {describe(error)}"
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
            if current and current.status == SUCCESS and await is_file(current.path):
                paths[step] = Path(current.path or "")
        buttons = [step for step in steps[1:] if step not in paths]
        if not buttons and IMAGINE in paths:
            return [paths[step] for step in steps]
        # Even a downloaded grid is waited on again when buttons remain: pressing them
        # needs the finished task's buttons (one batched poll, no new submit).
        grid = await self._step(job, record, IMAGINE, imagine)
        paths[IMAGINE] = await self._download(job, record, IMAGINE, grid)
        problems: list[JobFailed | JobUnknown] = []
        stopped: list[str] = []

        async def press(button: str) -> None:
            def submit(tag: str) -> Awaitable[Submission]:
                return self.client.action(grid, button, state=tag)

            try:
                task = await self._step(job, record, button, submit)
                paths[button] = await self._download(job, record, button, task)
            except (JobFailed, JobUnknown) as error:
                problems.append(error)
            except STOPS_RUN as error:
                self._stop(error)
                stopped.append(button)
            except Stopped:
                stopped.append(button)

        async with anyio.create_task_group() as group:
            for button in buttons:
                group.start_soon(press, button)
        if stopped:
            raise Stopped
        # An unknown submit outranks a failure: it is the one that needs a human decision.
        for problem in problems:
            if isinstance(problem, JobUnknown):
                raise problem
        if problems:
            permanent = all(isinstance(p, JobFailed) and p.permanent for p in problems)
            reason = "; ".join(p.reason for p in problems)
            raise JobFailed(reason, permanent=permanent)
        return [paths[step] for step in steps]

    # -- one step: submit (or re-attach), wait, download ---------------------------------
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
                raise JobFailed(f"{step}: {current.error}", permanent=True)
            current = None
        if current is not None and current.status in {SENDING, UNKNOWN}:
            current = await self._reattach(job, step, current)
        if current is not None and current.status != NEVER_SENT and current.task_id is not None:
            return await self._wait(job, record, step, current.task_id)
        # The task holds its place in the flow until it finishes (see Flow).
        task_id = await self._submit(job, record, step, submit)
        try:
            return await self._wait(job, record, step, task_id)
        finally:
            self._flow.release()


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
