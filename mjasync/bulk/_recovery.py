"""Finding what a lost submit created: the task list, searched by ``state`` tag.

A submit whose answer was lost (a timeout, a crash between sending and the answer) may
or may not have created a task. Every submit carries a ``state`` tag unique to its paid
intent; `StateIndex` looks tags up in ``GET /mj/task/list`` where the server has it, and
`Recovery` re-attaches a lost step to the task found, or proves it never arrived.
"""

from __future__ import annotations

import logging
import math
import time

import anyio

from mjasync import (
    APIError,
    AuthenticationError,
    Client,
    Delivery,
    MJError,
    NotFoundError,
    RateLimitError,
    Task,
    TaskStatus,
    delivery_of,
)

from ._base import JobUnknown, RunnerBase, unknown_reason
from ._input import Job
from ._journal import ACCEPTED, NEVER_SENT, SENDING, UNKNOWN, StepRecord

__all__ = ["Recovery", "StateIndex", "adopt_rank"]

logger = logging.getLogger("mjasync.bulk")

# Which of several tasks with one state tag to adopt: one that succeeded, else the one
# furthest along of those running; any other (not started, failed) only if alone.
_ADOPT_FIRST = (TaskStatus.SUCCESS, TaskStatus.IN_PROGRESS, TaskStatus.SUBMITTED)
_LIST_ROUTE_MISSING = frozenset({404, 405, 501})


class StateIndex:
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
            if current is None or adopt_rank(task) < adopt_rank(current):
                best[task.state] = task
        self._by_tag = best


def adopt_rank(task: Task) -> int:
    status = task.status
    return _ADOPT_FIRST.index(status) if status in _ADOPT_FIRST else len(_ADOPT_FIRST)


class Recovery(RunnerBase):
    """Re-attaching a step whose submit was lost (a `BulkRunner` mixin)."""

    _index: StateIndex

    async def _recover(self, job: Job, step: str, tag: str) -> str | None:
        """The id of the task tagged *tag*, journaled as the step's; None if not found.

        None too when recovery is off (``recover=False``).
        """
        found = await self._index.find(tag) if self.recover else None
        if found is None:
            return None
        await self.journal.set_step(
            job.key,
            step,
            ACCEPTED,
            task_id=found.id,
            requests=self._requests,
            error="recovered by state tag",
        )
        return found.id

    async def _reattach(self, job: Job, step: str, current: StepRecord) -> StepRecord | None:
        """An earlier run's lost submit (``sending``/``unknown``): the step to wait on, or
        None to submit it again.

        Found by its tag: accepted. Provably absent from the server's complete list, or
        *resubmit_unknown*: None. Otherwise the job is unknown (`JobUnknown`).
        """
        task_id = await self._recover(job, step, current.state_tag)
        if task_id is not None:
            current.status, current.task_id = ACCEPTED, task_id
            return current
        if self.recover and await self._never_arrived(current):
            await self.journal.set_step(
                job.key,
                step,
                NEVER_SENT,
                requests=self._requests,
                error="absent from the server's complete task list",
            )
            return None
        if self.resubmit_unknown:
            return None
        why = current.error or "interrupted between sending and the answer"
        raise JobUnknown(unknown_reason(step, why))

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
