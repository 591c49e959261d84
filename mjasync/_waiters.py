"""The waiting side of the poller: one `Waiter` per wait, `TaskWatch`, `await_waiter`.

A `TaskEntry` is what the poller knows of one task id (the last snapshot, when to ask
again) and who waits on it. A `Waiter` never talks to the server: it sleeps on a future
that the poller completes when its task changes, keeps its own deadline on the poller's
clock, and unregisters synchronously when closed, so a cancelled or abandoned wait costs
nothing from the next tick on.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ._clock import Clock, Timer, resolve
from ._errors import DecodeError, TaskTimeoutError
from ._forecast import Progress
from ._models import STATUS_RANKS, Task, is_final, outcome
from ._serde import decode_task

__all__ = [
    "EarlyNotifications",
    "ProgressCallback",
    "TaskEntry",
    "TaskWatch",
    "Waiter",
    "await_waiter",
]

ProgressCallback = Callable[[Task], object]
"""``on_progress``: a plain function, or one returning an awaitable (``async def``)."""


class Registry(Protocol):
    """Where a waiter unregisters itself (the poller)."""

    def unregister(self, waiter: Waiter) -> None:
        """Forget *waiter*; its id stops being polled when no other waiter needs it."""


class Waiter:
    """One registration with the poller: the snapshots of one task, as they change.

    Created by `Poller.register`; consume with `next` and always `close` it (a
    ``finally`` does): closing unregisters synchronously. `push` and `fail` are the
    poller's side.
    """

    __slots__ = (
        "_clock",
        "_deadline",
        "_error",
        "_expired",
        "_final",
        "_future",
        "_pending",
        "_registry",
        "_timeout",
        "_timer",
        "entry",
        "keep_all",
        "last",
        "task_id",
    )

    def __init__(
        self,
        registry: Registry,
        entry: TaskEntry,
        keep_all: bool,
        timeout: float | None,
        clock: Clock,
    ) -> None:
        self.task_id = entry.id
        self.last: Task | None = None
        self.entry = entry
        self.keep_all = keep_all
        self._registry: Registry | None = registry
        self._clock = clock
        # A list, not a deque: it rarely holds more than one item, and an empty deque
        # costs 600+ bytes per waiter.
        self._pending: list[Task] = []
        self._final = False
        self._error: BaseException | None = None
        self._future: asyncio.Future[None] | None = None
        self._expired = False
        self._timeout = timeout
        self._timer: Timer | None = None
        self._deadline = math.inf
        if timeout is not None:
            self._deadline = clock.now() + timeout
            self._timer = clock.call_at(self._deadline, self._expire)

    def _wake(self) -> None:
        if self._future is not None:
            resolve(self._future)

    def _expire(self) -> None:
        if self._deadline - self._clock.now() > 0:
            # The loop may fire a timer up to its clock resolution early; the contract
            # is "never before the deadline".
            self._timer = self._clock.call_at(self._deadline, self._expire)
            return
        self._timer = None
        self._expired = True
        self._wake()

    def push(self, task: Task, final: bool) -> None:
        """A newer snapshot of the task (the poller's side)."""
        if not self.keep_all:
            self._pending.clear()
        self._pending.append(task)
        self.last = task
        if final:
            self._final = True
            self._wake()
        elif self.keep_all:
            # A plain await_task only returns the final snapshot: waking it for each
            # progress hint would cost a task switch per notification for nothing.
            self._wake()

    def fail(self, error: BaseException) -> None:
        """End the wait with *error* (the poller's side); the first error wins."""
        if self._error is None:
            self._error = error
        self._wake()

    async def next(self) -> Task:
        """The next changed snapshot; the final one (`is_final`) is the last.

        Without *keep_all* only the final snapshot is returned.

        Raises:
            mjasync.TaskTimeoutError: the timeout ran out first.
            mjasync.TaskNotFoundError: the server does not know the id.
            mjasync.ClientClosedError: the client was closed.
        """
        while True:
            if self._pending and (self._final or (self.keep_all and not self._expired)):
                return self._pending.pop(0)
            if self._error is not None:
                raise self._error
            if self._expired:
                last = self.entry.snapshot() or self.last
                status = f"last status {last.status or 'unknown'}" if last else "never seen"
                msg = f"task {self.task_id} did not finish within {self._timeout:g} s ({status})"
                raise TaskTimeoutError(msg, task_id=self.task_id, last=last)
            if self._final:
                msg = f"task {self.task_id}: no snapshot after the final one"
                raise RuntimeError(msg)
            future = asyncio.get_running_loop().create_future()
            self._future = future
            try:
                await future
            finally:
                self._future = None

    def close(self) -> None:
        """Unregister; the id stops being polled when no other waiter needs it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        registry = self._registry
        if registry is not None:
            self._registry = None
            registry.unregister(self)


class TaskEntry:
    """Per-id state: what we last saw, when to ask again, and who waits.

    The poller's scheduling state lives here too: ``due`` (the next poll), ``gap`` (a
    queued task's growing gap), ``answered_at`` (the last answer naming it), and what
    the forecast knows: ``start`` (the server's startTime, epoch seconds), ``action``,
    ``pace`` (its progress steps), ``finish`` (the estimate), ``history`` (how many
    actions had a history then) and the tick-pace window ``[near_from, near_until)``
    around it (empty while nothing is estimated). ``failures``, ``cohort`` and
    ``split_at`` keep one bad id from failing the requests of others (`Pace.failed`).
    """

    __slots__ = (
        "action",
        "alive",
        "answered_at",
        "cohort",
        "confirm",
        "due",
        "failures",
        "finish",
        "gap",
        "history",
        "id",
        "image_url",
        "in_flight",
        "last",
        "last_raw",
        "missing_since",
        "near_from",
        "near_until",
        "pace",
        "progress",
        "rank",
        "raw_key",
        "split_at",
        "start",
        "status",
        "waiters",
        "watchers",
    )

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.waiters: list[Waiter] = []
        self.last: Task | None = None
        self.status: str | None = None
        self.progress: int | None = None
        self.image_url: str | None = None
        self.rank = -1
        self.raw_key: tuple[object, object, object] | None = None
        self.last_raw: dict[str, Any] | None = None
        self.watchers = 0
        self.due = math.inf
        self.gap = 0.0
        self.in_flight = False
        self.alive = True
        self.confirm = False
        self.missing_since: float | None = None
        # Failed polls in a row, and the requests it may share (0: any; otherwise only
        # with ids of the same split batch, see Pace.failed).
        self.failures = 0
        self.cohort = 0
        self.split_at = 0
        self.answered_at: float | None = None
        self.start: float | None = None
        self.action: str | None = None
        self.pace: Progress | None = None
        self.history = 0
        self.finish = math.inf
        self.near_from = math.inf
        self.near_until = -math.inf

    def snapshot(self) -> Task | None:
        """The newest snapshot, decoding a deferred one now."""
        if self.last is None and self.last_raw is not None:
            try:
                self.last = decode_task(self.last_raw)
            except DecodeError:
                return None
            self.last_raw = None
        return self.last

    def advance(self, status: str, progress: int | None, image_url: str | None) -> int | None:
        """Move to a newer state and return its rank; None if it is not newer."""
        self.missing_since = None
        if status == self.status and progress == self.progress and image_url == self.image_url:
            return None
        rank = STATUS_RANKS.get(status, 0)
        if rank < self.rank:
            return None
        if rank == self.rank and progress != self.progress:
            old = self.progress
            if progress is None or (old is not None and progress < old):
                return None
        self.status = status
        self.progress = progress
        self.image_url = image_url
        self.rank = rank
        return rank


class EarlyNotifications:
    """Notifications for ids nobody awaits yet, kept for a waiter that comes later.

    The hook may race the submit's answer, or the caller may await later: the newest
    *limit* are kept (with whether to trust them), and a later snapshot never gives way
    to an older one.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._held: OrderedDict[str, tuple[Task, bool]] = OrderedDict()

    def remember(self, task: Task, trust: bool) -> None:
        """Keep *task* for its id, unless a later snapshot is kept already."""
        held = self._held.get(task.id)
        if held is not None and STATUS_RANKS.get(held[0].status, 0) > STATUS_RANKS.get(
            task.status, 0
        ):
            return
        self._held[task.id] = (task, trust)
        self._held.move_to_end(task.id)
        if len(self._held) > self._limit:
            self._held.popitem(last=False)

    def pop(self, task_id: str) -> tuple[Task, bool] | None:
        """The notification kept for *task_id* (and forget it), or None."""
        return self._held.pop(task_id, None)


async def await_waiter(waiter: Waiter, on_progress: ProgressCallback | None) -> Task:
    """Consume *waiter* to its final snapshot, judge it, and always close the waiter.

    The callback runs in the awaiting task, so its exception (or slowness) belongs to
    this waiter alone; the poller never runs user code.
    """
    try:
        while True:
            task = await waiter.next()
            if on_progress is not None:
                result = on_progress(task)
                if inspect.isawaitable(result):
                    await result
            if is_final(task):
                return outcome(task)
    finally:
        waiter.close()


class TaskWatch:
    """An async iterator over the changed snapshots of one task (see `Client.watch`).

    It registers with the poller on the first ``__anext__`` (the timeout starts there),
    ends after the final snapshot (SUCCESS, FAILURE, CANCEL or MODAL), and unregisters
    as soon as it ends, raises, is closed, or is dropped by a ``break``: leaving the
    loop early stops the polling without waiting for garbage collection of a generator.
    """

    def __init__(self, register: Callable[[], Waiter]) -> None:
        self._register = register
        self._waiter: Waiter | None = None
        self._done = False

    def __aiter__(self) -> TaskWatch:
        return self

    async def __anext__(self) -> Task:
        if self._done:
            raise StopAsyncIteration
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = self._register()
        try:
            task = await waiter.next()
        except BaseException:
            self.close()
            raise
        if is_final(task):
            self.close()
        return task

    def close(self) -> None:
        """Stop watching; further iteration ends at once."""
        self._done = True
        waiter = self._waiter
        if waiter is not None:
            waiter.close()

    async def aclose(self) -> None:
        """Stop watching (the async-iterator protocol's spelling of `close`)."""
        self.close()

    async def __aenter__(self) -> TaskWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # CPython drops the iterator right after a `break`: unregister then, not at GC.
        if getattr(self, "_waiter", None) is not None:
            self.close()
