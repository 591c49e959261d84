"""PollPolicy and the coalescing poller behind `await_task` and `watch`.

A client owns at most one `Poller`. Every waiter registers the id it wants; the poller
keeps one entry per id (last snapshot, next due time, waiters) and one heap of due times,
so a tick sends one batch request per `PollPolicy.batch_size` due ids, however many
waiters share them. Waiters never talk to the server: they sleep on a future that the
poller completes when their task changes, and they unregister synchronously, so a
cancelled or abandoned waiter costs nothing from the next tick on.

The poller gets its I/O as callables (``fetch_batch``, ``fetch_one``) from the client:
it imports neither the client nor aiohttp.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import inspect
import itertools
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup

from ._errors import (
    AuthenticationError,
    ClientClosedError,
    DecodeError,
    MJError,
    ModalRequiredError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from ._models import Task
from ._serde import as_id, decode_task, parse_progress

__all__ = [
    "PollPolicy",
    "PollStats",
    "Poller",
    "ProgressCallback",
    "TaskWatch",
    "Waiter",
    "await_waiter",
    "is_final",
    "outcome",
]

logger = logging.getLogger("mjasync")

# Snapshots only move forward: a duplicate or late poll/hook answer never undoes a newer
# one. MODAL shares the top rank with the terminal statuses: it never moves by itself.
_FINAL_RANK = 3
_RANKS: dict[str, int] = {
    "NOT_START": 0,
    "": 0,
    "SUBMITTED": 1,
    "IN_PROGRESS": 2,
    "MODAL": _FINAL_RANK,
    "SUCCESS": _FINAL_RANK,
    "FAILURE": _FINAL_RANK,
    "CANCEL": _FINAL_RANK,
}
_QUEUED_GROWTH = 1.5
# Notifications for ids nobody awaits yet (the hook raced the submit answer, or the
# caller awaits later) are kept this many at a time, newest first, for a later waiter.
_EARLY_NOTIFICATIONS = 4096
_MIN_RECHECK = 0.001


def is_final(task: Task) -> bool:
    """True when *task* will not change by itself: SUCCESS, FAILURE, CANCEL or MODAL."""
    return _RANKS.get(task.status, 0) == _FINAL_RANK


def outcome(task: Task) -> Task:
    """*task* when it is SUCCESS (or not final); otherwise the matching `TaskError`."""
    status = task.status
    if status == "FAILURE":
        raise TaskFailedError(task)
    if status == "CANCEL":
        raise TaskCancelledError(task)
    if status == "MODAL":
        raise ModalRequiredError(task)
    return task


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        msg = f"{attribute.name} must be > 0, got {value!r}"
        raise ValueError(msg)


def _not_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        msg = f"{attribute.name} must be >= 0, got {value!r}"
        raise ValueError(msg)


def _fraction(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value < 1:
        msg = f"{attribute.name} must be in [0, 1), got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the client's one poller asks the server about tasks.

    Every duration is in seconds; values down to a few milliseconds are allowed.

    Attributes:
        interval: seconds between polls of a task that is running (IN_PROGRESS).
        max_interval: the longest gap for a task that is queued or not started; the gap
            grows from *interval* towards it while the task waits.
        batch_size: ids per ``list-by-condition`` request.
        first_poll: delay before the first poll of a newly awaited id, so an immediate
            FAILURE or MODAL is seen at once (never longer than *interval*).
        not_found_grace: how long an id the server does not know is re-checked before
            `TaskNotFoundError` is raised (relays lag behind the proxy they front).
        max_requests_per_second: ceiling on status requests for the whole client.
        webhook_interval: the safety-net gap used when the client has a ``notify_hook``
            and a notification has arrived: they wake waiters, polling only covers lost
            callbacks. Until the first one arrives the normal intervals apply, so a relay
            that strips hooks costs nothing.
        jitter: each gap is scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so
            waiters submitted together do not poll in lockstep forever.
    """

    interval: float = attrs.field(default=2.0, validator=_positive)
    max_interval: float = attrs.field(default=10.0, validator=_positive)
    batch_size: int = attrs.field(default=100, validator=_positive)
    first_poll: float = attrs.field(default=0.5, validator=_not_negative)
    not_found_grace: float = attrs.field(default=3.0, validator=_not_negative)
    max_requests_per_second: float = attrs.field(default=20.0, validator=_positive)
    webhook_interval: float = attrs.field(default=15.0, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_fraction)


@attrs.frozen(kw_only=True)
class PollStats:
    """Counters of one client's poller since it started (see `Client.poll_stats`).

    Attributes:
        ticks: scheduling rounds that sent at least one status request.
        status_requests: batch and single-task requests the poller sent.
        max_requests_per_tick: the most status requests one tick sent.
        snapshots: task snapshots received from polls, changed or not.
        changes: snapshots that were newer than the last one and woke waiters.
        notifications: accepted notifications that named an awaited task.
        polled_ids: ids being polled right now.
        waiters: waiters registered right now.
    """

    ticks: int = 0
    status_requests: int = 0
    max_requests_per_tick: int = 0
    snapshots: int = 0
    changes: int = 0
    notifications: int = 0
    polled_ids: int = 0
    waiters: int = 0


class Waiter:
    """One registration with the poller: the snapshots of one task, as they change.

    Created by `Poller.register`; consume with `next` and always `close` it (a
    ``finally`` does): closing unregisters synchronously.
    """

    __slots__ = (
        "_deadline",
        "_entry",
        "_error",
        "_expired",
        "_final",
        "_future",
        "_keep_all",
        "_pending",
        "_poller",
        "_timeout",
        "_timer",
        "last",
        "task_id",
    )

    def __init__(
        self, poller: Poller, entry: _Entry, keep_all: bool, timeout: float | None
    ) -> None:
        self.task_id = entry.id
        self.last: Task | None = None
        self._poller: Poller | None = poller
        self._entry = entry
        self._keep_all = keep_all
        # A list, not a deque: it rarely holds more than one item, and an empty deque
        # costs 600+ bytes per waiter.
        self._pending: list[Task] = []
        self._final = False
        self._error: BaseException | None = None
        self._future: asyncio.Future[None] | None = None
        self._expired = False
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = math.inf
        if timeout is not None:
            self._deadline = time.monotonic() + timeout
            self._timer = asyncio.get_running_loop().call_later(timeout, self._expire)

    def _wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def _expire(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining > 0:
            # The loop may fire a timer up to its clock resolution early; the contract
            # is "never before the deadline".
            self._timer = asyncio.get_running_loop().call_later(remaining, self._expire)
            return
        self._timer = None
        self._expired = True
        self._wake()

    def _push(self, task: Task, final: bool) -> None:
        if not self._keep_all:
            self._pending.clear()
        self._pending.append(task)
        self.last = task
        if final:
            self._final = True
            self._wake()
        elif self._keep_all:
            # A plain await_task only returns the final snapshot: waking it for each
            # progress hint would cost a task switch per notification for nothing.
            self._wake()

    def _fail(self, error: BaseException) -> None:
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
            if self._pending and (self._final or (self._keep_all and not self._expired)):
                return self._pending.pop(0)
            if self._error is not None:
                raise self._error
            if self._expired:
                last = self._entry.snapshot() or self.last
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
        poller = self._poller
        if poller is not None:
            self._poller = None
            poller._unregister(self)


class _Entry:
    """Per-id state: what we last saw and when to ask again."""

    __slots__ = (
        "alive",
        "confirm",
        "due",
        "gap",
        "id",
        "image_url",
        "in_flight",
        "last",
        "last_raw",
        "missing_since",
        "progress",
        "rank",
        "raw_key",
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

    def snapshot(self) -> Task | None:
        """The newest snapshot, decoding a deferred one now."""
        if self.last is None and self.last_raw is not None:
            try:
                self.last = decode_task(self.last_raw)
            except DecodeError:
                return None
            self.last_raw = None
        return self.last


class _Bucket:
    """A token bucket: the ceiling on status requests per second, with a 1 s burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, cost: float) -> float:
        """Spend *cost* tokens; return how long to wait before sending."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= cost
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


FetchBatch = Callable[[Sequence[str]], Awaitable[list[object]]]
FetchOne = Callable[[str], Awaitable[Task]]


class Poller:
    """The one background poller of a client (see the module docstring).

    Args:
        policy: intervals, batch size and rate ceiling.
        fetch_batch: snapshots of up to ``policy.batch_size`` ids, as undecoded JSON
            objects (or `Task` objects); ids the server does not know are left out.
        fetch_one: one snapshot; raises `TaskNotFoundError` for an unknown id.
        per_id: True when *fetch_batch* already fetches id by id (then a missing id
            needs no extra check, and each id costs one request against the ceiling).
        hooks: the client sends a notifyHook, so polling is only the safety net.
    """

    def __init__(
        self,
        policy: PollPolicy,
        *,
        fetch_batch: FetchBatch,
        fetch_one: FetchOne,
        per_id: Callable[[], bool] = lambda: False,
        hooks: bool = False,
    ) -> None:
        self.policy = policy
        self._fetch_batch = fetch_batch
        self._fetch_one = fetch_one
        self._per_id = per_id
        self._hooks = hooks
        # Relays often strip notifyHook: poll at the slow safety-net rate only once a
        # notification has proved that callbacks really arrive.
        self._hooks_heard = False
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._confirms: list[_Entry] = []
        self._early: OrderedDict[str, tuple[Task, bool]] = OrderedDict()
        self._bucket = _Bucket(policy.max_requests_per_second)
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._group: TaskGroup | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._sleep_until = -math.inf
        self._closed = False
        self._failures = 0
        self._waiters = 0
        self._ticks = 0
        self._requests = 0
        self._max_per_tick = 0
        self._snapshots = 0
        self._changes = 0
        self._notifications = 0

    # -- waiters -------------------------------------------------------------------------

    def register(self, task_id: str, *, keep_all: bool, timeout: float | None) -> Waiter:
        """Start following *task_id*; the returned waiter must be closed.

        *keep_all* queues every changed snapshot and wakes `Waiter.next` for each (watch,
        ``on_progress``); otherwise only the newest is kept and `Waiter.next` returns only
        the final one (or raises). The waiter's timeout starts now.
        """
        if self._closed:
            msg = "this Client is closed"
            raise ClientClosedError(msg)
        self._ensure_running()
        entry = self._entries.get(task_id)
        early = None
        if entry is None:
            entry = self._entries[task_id] = _Entry(task_id)
            first = min(self.policy.first_poll, self.policy.interval)
            self._schedule(entry, time.monotonic(), first)
            early = self._early.pop(task_id, None)
        waiter = Waiter(self, entry, keep_all, timeout)
        entry.waiters.append(waiter)
        self._waiters += 1
        if keep_all:
            entry.watchers += 1
        last = entry.snapshot()
        if last is not None:
            waiter._push(last, final=False)
        if early is not None:
            task, trust = early
            self.notify(task, trust=trust)
        return waiter

    def _unregister(self, waiter: Waiter) -> None:
        entry = waiter._entry
        try:
            entry.waiters.remove(waiter)
        except ValueError:
            return
        self._waiters -= 1
        if waiter._keep_all:
            entry.watchers -= 1
        if not entry.waiters:
            self._drop(entry)

    def _drop(self, entry: _Entry) -> None:
        # The heap keeps its stale item; the tick skips items whose entry is dead.
        entry.alive = False
        if self._entries.get(entry.id) is entry:
            del self._entries[entry.id]

    def _finish(self, entry: _Entry, error: BaseException) -> None:
        """End every waiter of *entry* with its own copy of *error*."""
        self._drop(entry)
        for waiter in entry.waiters:
            waiter._fail(copy.copy(error))

    # -- notifications -------------------------------------------------------------------

    def notify(self, task: Task, *, trust: bool) -> bool:
        """A notifyHook snapshot; True when it names an awaited task.

        Progress is delivered at once. A final status is confirmed with one fetch before
        it resolves anyone, unless *trust*; stale and duplicate snapshots change nothing.
        """
        self._hooks_heard = True
        entry = self._entries.get(task.id)
        if entry is None:
            self._remember(task, trust)
            return False
        self._notifications += 1
        if trust or not is_final(task):
            if not entry.confirm:
                # Behind a final hint awaiting its confirming fetch, progress is stale.
                self._apply(entry, task)
            return True
        if not entry.confirm:
            entry.confirm = True
            if not entry.in_flight:
                self._confirms.append(entry)
                self._wake(-math.inf)
        return True

    def _remember(self, task: Task, trust: bool) -> None:
        early = self._early
        held = early.get(task.id)
        if held is not None and _RANKS.get(held[0].status, 0) > _RANKS.get(task.status, 0):
            return
        early[task.id] = (task, trust)
        early.move_to_end(task.id)
        if len(early) > _EARLY_NOTIFICATIONS:
            early.popitem(last=False)

    # -- the loop ------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mjasync-poller")

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                while True:
                    await self._tick(group)
                    await self._sleep()
        except Exception as error:
            # A bug here must not leave waiters hanging: hand it to every one of them.
            logger.exception("the mjasync poller crashed")
            for entry in list(self._entries.values()):
                self._finish(entry, error)
        finally:
            self._group = None

    async def _tick(self, group: TaskGroup) -> None:
        now = time.monotonic()
        sent = 0
        confirms = [e for e in self._confirms if e.alive and not e.in_flight]
        self._confirms.clear()
        for entry in confirms:
            entry.confirm = False
            entry.in_flight = True
        due: list[_Entry] = []
        heap = self._heap
        if heap and heap[0][0] <= now:
            # Ids due within a quarter interval ride along, so waiters registered a few
            # milliseconds apart share requests instead of each opening a tick.
            horizon = now + self.policy.interval * 0.25
            while heap and heap[0][0] <= horizon:
                when, _, entry = heapq.heappop(heap)
                if entry.alive and not entry.in_flight and entry.due == when:
                    entry.in_flight = True
                    due.append(entry)
        size = self.policy.batch_size
        if len(confirms) == 1:
            sent += await self._send(group, confirms, single=True)
        else:
            for start in range(0, len(confirms), size):
                sent += await self._send(group, confirms[start : start + size], single=False)
        for start in range(0, len(due), size):
            sent += await self._send(group, due[start : start + size], single=False)
        if sent:
            self._ticks += 1
            self._max_per_tick = max(self._max_per_tick, sent)

    async def _send(self, group: TaskGroup, entries: list[_Entry], single: bool) -> int:
        cost = len(entries) if single or self._per_id() else 1
        delay = self._bucket.take(cost)
        if delay > 0:
            await anyio.sleep(delay)
        self._requests += 1
        group.start_soon(self._poll, entries, single)
        return 1

    async def _sleep(self) -> None:
        if self._confirms:
            await anyio.lowlevel.checkpoint()
            return
        until = self._heap[0][0] if self._heap else math.inf
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._wakeup = future
        self._sleep_until = until
        handle = None
        if until != math.inf:
            handle = loop.call_later(max(0.0, until - time.monotonic()), _resolve, future)
        try:
            await future
        finally:
            if handle is not None:
                handle.cancel()
            self._wakeup = None
            self._sleep_until = -math.inf

    def _wake(self, due: float) -> None:
        if due < self._sleep_until and self._wakeup is not None:
            _resolve(self._wakeup)

    def _schedule(self, entry: _Entry, now: float, gap: float) -> None:
        due = now + gap
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        self._wake(due)

    def _gap(self, entry: _Entry) -> float:
        policy = self.policy
        if entry.rank == 2:
            entry.gap = 0.0
            gap = policy.interval
        else:
            ceiling = max(policy.max_interval, policy.interval)
            gap = min(ceiling, entry.gap * _QUEUED_GROWTH) if entry.gap else policy.interval
            entry.gap = gap
        if self._hooks and self._hooks_heard:
            gap = max(gap, policy.webhook_interval)
        jitter = policy.jitter
        return gap * self._rng.uniform(1 - jitter, 1 + jitter) if jitter else gap

    # -- answers -------------------------------------------------------------------------

    async def _poll(self, entries: list[_Entry], single: bool) -> None:
        try:
            tasks: list[object]
            if single:
                tasks = []
                for entry in entries:
                    try:
                        tasks.append(await self._fetch_one(entry.id))
                    except TaskNotFoundError:
                        continue
            else:
                tasks = await self._fetch_batch([entry.id for entry in entries])
        except ClientClosedError:
            return
        except AuthenticationError as error:
            for entry in entries:
                if entry.alive:
                    self._finish(entry, error)
            return
        except MJError as error:
            self._back_off(entries, error)
            return
        except Exception as error:
            logger.exception("polling %d task(s) failed unexpectedly", len(entries))
            for entry in entries:
                if entry.alive:
                    self._finish(entry, error)
            return
        self._failures = 0
        self._absorb(tasks, entries, checked=single or self._per_id())

    def _back_off(self, entries: list[_Entry], error: MJError) -> None:
        self._failures += 1
        policy = self.policy
        ceiling = max(policy.max_interval, policy.interval)
        delay = min(ceiling, policy.interval * 2 ** min(self._failures, 16))
        delay *= self._rng.uniform(1 - policy.jitter, 1 + policy.jitter)
        logger.warning(
            "polling %d task(s) failed (%s: %s); retrying in %.2fs",
            len(entries),
            type(error).__name__,
            error,
            delay,
        )
        now = time.monotonic()
        for entry in entries:
            entry.in_flight = False
            if entry.alive:
                self._schedule(entry, now, delay)

    def _absorb(self, items: list[object], entries: list[_Entry], *, checked: bool) -> None:
        """Apply one answer, then reschedule, re-check or retire every entry asked about.

        The hot path: most polled snapshots repeat the last one, so a JSON object whose
        status, progress and image URL are unchanged is skipped before decoding.
        """
        self._snapshots += len(items)
        live = self._entries
        apply = self._apply
        seen: set[str] = set()
        for item in items:
            if type(item) is dict:
                task_id = as_id(item.get("id"))
                entry = live.get(task_id) if task_id is not None else None
                if entry is None:
                    continue
                seen.add(entry.id)
                key = (item.get("status"), item.get("progress"), item.get("imageUrl"))
                if key == entry.raw_key:
                    entry.missing_since = None
                    continue
                entry.raw_key = key
                status = key[0]
                if type(status) is not str:
                    status = ""
                rank = _RANKS.get(status, 0)
                if rank != _FINAL_RANK and not entry.watchers:
                    # Only a final snapshot reaches a plain await_task: decode later, if
                    # ever (a timeout's .last, a watcher joining).
                    self._apply_raw(entry, item, status, rank)
                    continue
                try:
                    task = decode_task(item)
                except DecodeError:
                    continue
                apply(entry, task)
            elif isinstance(item, Task):
                entry = live.get(item.id)
                if entry is not None:
                    seen.add(item.id)
                    apply(entry, item)
        now = time.monotonic()
        unchecked: list[_Entry] = []
        for entry in entries:
            if not entry.alive:
                continue
            entry.in_flight = False
            if entry.id not in seen:
                if checked:
                    self._missing(entry, now)
                    continue
                # A batch answer silently omits ids; one fetch tells "unknown" from "lag".
                entry.in_flight = True
                unchecked.append(entry)
                continue
            if entry.confirm:
                entry.confirm = False
                # A hook said final while this request was on its way; this answer may
                # predate it, so ask once more, now.
                self._confirms.append(entry)
                self._wake(-math.inf)
                self._schedule(entry, now, self._gap(entry))
                continue
            self._schedule(entry, now, self._gap(entry))
        if unchecked and self._group is not None:
            for entry in unchecked:
                self._requests += 1
                self._bucket.take(1)
                self._group.start_soon(self._poll, [entry], True)

    def _missing(self, entry: _Entry, now: float) -> None:
        if entry.missing_since is None:
            entry.missing_since = now
        grace = self.policy.not_found_grace
        if now - entry.missing_since >= grace:
            msg = f"task {entry.id} not found: the server does not know this id"
            self._finish(entry, TaskNotFoundError(msg, task_id=entry.id))
            return
        self._schedule(entry, now, max(_MIN_RECHECK, min(self.policy.interval, grace / 4)))

    @staticmethod
    def _advance(
        entry: _Entry, status: str, progress: int | None, image_url: str | None
    ) -> int | None:
        """Move *entry* to a newer state and return its rank; None if not newer."""
        entry.missing_since = None
        if status == entry.status and progress == entry.progress and image_url == entry.image_url:
            return None
        rank = _RANKS.get(status, 0)
        if rank < entry.rank:
            return None
        if rank == entry.rank and progress != entry.progress:
            old = entry.progress
            if progress is None or (old is not None and progress < old):
                return None
        entry.status = status
        entry.progress = progress
        entry.image_url = image_url
        entry.rank = rank
        return rank

    def _apply(self, entry: _Entry, task: Task) -> None:
        """Deliver *task* to the waiters if it is newer than what they have seen."""
        rank = self._advance(entry, task.status, task.progress, task.image_url)
        if rank is None:
            return
        entry.last = task
        entry.last_raw = None
        self._changes += 1
        final = rank == _FINAL_RANK
        for waiter in entry.waiters:
            waiter._push(task, final)
        if final:
            self._drop(entry)

    def _apply_raw(self, entry: _Entry, item: dict[str, Any], status: str, rank: int) -> None:
        """Record an intermediate snapshot nobody asked to see, without decoding it."""
        if rank < entry.rank:
            return
        image_url = item.get("imageUrl")
        state = self._advance(
            entry,
            status,
            parse_progress(item.get("progress")),
            image_url if type(image_url) is str and image_url else None,
        )
        if state is not None:
            entry.last = None
            entry.last_raw = item
            self._changes += 1

    # -- lifecycle -----------------------------------------------------------------------

    def stats(self) -> PollStats:
        """The counters so far."""
        return PollStats(
            ticks=self._ticks,
            status_requests=self._requests,
            max_requests_per_tick=self._max_per_tick,
            snapshots=self._snapshots,
            changes=self._changes,
            notifications=self._notifications,
            polled_ids=len(self._entries),
            waiters=self._waiters,
        )

    async def aclose(self) -> None:
        """Stop polling and end every waiter with `ClientClosedError`."""
        self._closed = True
        for entry in list(self._entries.values()):
            msg = f"the client was closed while waiting for task {entry.id}"
            self._finish(entry, ClientClosedError(msg))
        self._heap.clear()
        self._confirms.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait, not ``await task``: the poller's own CancelledError must not be
            # mistaken for the caller's (whose task may be cancelling already, e.g. when the
            # owner of the client was cancelled). Only a cancellation of the caller during
            # the wait raises here, and the caller's aclose goes on closing regardless.
            await asyncio.wait({task})
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved: a crashed poller was already logged by _run


ProgressCallback = Callable[[Task], object]
"""``on_progress``: a plain function, or one returning an awaitable (``async def``)."""


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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
