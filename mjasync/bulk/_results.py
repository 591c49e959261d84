"""A step's end: waiting on its task, then saving the result under a stable name."""

from __future__ import annotations

from pathlib import Path

import anyio

from mjasync import (
    AuthenticationError,
    MJError,
    Task,
    TaskError,
    TaskNotFoundError,
    TaskTimeoutError,
    file_stem,
)

from ._base import STOPS_RUN, JobFailed, RunnerBase, describe
from ._input import Job
from ._journal import FAILED, SUCCESS, JobRecord, StepRecord

__all__ = ["Results", "is_file"]

# Every suffix `Client.download` may give a file (images, then videos).
_SAVED_SUFFIXES = (".png", ".jpg", ".webp", ".gif", ".mp4", ".webm", ".mov")


async def is_file(path: str | None) -> bool:
    return bool(path) and await anyio.Path(path or "").is_file()


class Results(RunnerBase):
    """Waiting on a step's task and downloading its result (a `BulkRunner` mixin)."""

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
            reason = f"{step} (task {task_id}): {describe(error)}"
            if isinstance(error, STOPS_RUN):
                raise
            if isinstance(error, TaskTimeoutError):
                raise JobFailed(f"{reason}; a rerun keeps waiting", permanent=False) from None
            if isinstance(error, TaskError | TaskNotFoundError):
                # FAILURE, CANCEL, MODAL, or a task the server forgot: waiting again won't help.
                await self.journal.set_step(
                    job.key, step, FAILED, requests=self._requests, error=describe(error)
                )
                if current is not None:
                    current.status, current.error = FAILED, describe(error)
                raise JobFailed(reason, permanent=True) from None
            raise JobFailed(f"{reason}; a rerun waits again", permanent=False) from None
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
        if current.path and await is_file(current.path):
            return Path(current.path)
        try:
            name = await self._file_name(job, step, task)
            path = await self.client.download(task, self.out_dir, filename=name)
        except AuthenticationError:
            raise
        except MJError as error:
            msg = f"{step}: downloading task {task.id} failed ({describe(error)}); rerun to retry"
            raise JobFailed(msg, permanent=False) from None
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
