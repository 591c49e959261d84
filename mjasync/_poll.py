"""The coalescing poller behind `await_task` and `watch`: one per client.

Every waiter registers the id it wants; the poller keeps one `TaskEntry` per id (last
snapshot, when it is next due, waiters) and one heap of due times. It paces the client,
not each task: a tick asks about every id that is due (and those due within
`Pace.ride`) in one request per `PollPolicy.batch_size` of them, and fills the room
left in the last request with the ids due soonest, so ids share ticks instead of each
keeping its own phase.

When an id is next due, how often ticks come and which ids share a request is
`_pace.Pace`'s to say.

The poller gets its I/O from a `TaskSource` (the client's batch fetcher, which answers
raw JSON objects) and its time from a `Clock`: it imports neither the client nor
aiohttp, and a test can run it on virtual time.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import logging
import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._clock import Alarm, Clock, LoopClock, TokenBucket
from ._errors import (
    AuthenticationError,
    ClientClosedError,
    DecodeError,
    MJError,
    TaskNotFoundError,
)
from ._models import FINAL_RANK, STATUS_RANKS, Task, is_final
from ._pace import Pace
from ._policy import PollPolicy, PollStats
from ._serde import as_id, decode_task, parse_progress
from ._waiters import EarlyNotifications, TaskEntry, Waiter

__all__ = ["Poller", "TaskSource"]

logger = logging.getLogger("mjasync")

_MIN_RECHECK = 0.001
# A loop timer may fire up to one clock resolution early (15.6 ms on Windows, 1 ns on
# Linux): what is due that soon is due now, or the poller would spin until it is.
_TIMER_SLACK = time.get_clock_info("monotonic").resolution


class TaskSource(Protocol):
    """Where the poller gets snapshots: task JSON objects as the server sent them."""

    @property
    def per_id(self) -> bool:
        """True when `fetch_batch` asks id by id (each id costs a request, and an id
        missing from its answer is known to be unknown)."""

    async def fetch_batch(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Snapshots of up to ``batch_size`` ids; ids the server does not know are left out."""

    async def fetch_one(self, task_id: str) -> dict[str, Any]:
        """One snapshot; raises `TaskNotFoundError` for an id the server does not know."""


class Poller:
    """The one background poller of a client (see the module docstring).

    Args:
        policy: intervals, batch size and rate ceiling.
        source: where snapshots come from (the client's batch fetcher).
        hooks: the client sends a notifyHook, so polling is only the safety net.
        clock: the time every gap, deadline and the rate ceiling are measured on.
    """

    def __init__(
        self,
        policy: PollPolicy,
        source: TaskSource,
        *,
        hooks: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.policy = policy
        self._source = source
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._entries: dict[str, TaskEntry] = {}
        self._heap: list[tuple[float, int, TaskEntry]] = []
        self._seq = itertools.count()
        self._confirms: list[TaskEntry] = []
        # Ids a batch answer left out: each gets a fetch of its own, metered like any poll.
        self._lookups: list[TaskEntry] = []
        self._early = EarlyNotifications()
        self._bucket = TokenBucket(policy.max_requests_per_second, self._clock)
        self._pace = Pace(policy, hooks=hooks)
        self._task: asyncio.Task[None] | None = None
        self._group: TaskGroup | None = None
        self._alarm = Alarm(self._clock)
        self._closed = False
        self._failures = 0
        self._successes = 0
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
            entry = self._entries[task_id] = TaskEntry(task_id)
            first = min(self.policy.first_poll, self.policy.interval)
            self._schedule(entry, self._clock.now(), first)
            early = self._early.pop(task_id)
        waiter = Waiter(self, entry, keep_all, timeout, self._clock)
        entry.waiters.append(waiter)
        self._waiters += 1
        if keep_all:
            entry.watchers += 1
        last = entry.snapshot()
        if last is not None:
            waiter.push(last, final=False)
        if early is not None:
            task, trust = early
            self.notify(task, trust=trust)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        """Forget *waiter* (`Waiter.close` calls this); a task nobody awaits is dropped."""
        entry = waiter.entry
        try:
            entry.waiters.remove(waiter)
        except ValueError:
            return
        self._waiters -= 1
        if waiter.keep_all:
            entry.watchers -= 1
        if not entry.waiters:
            self._drop(entry)

    def _drop(self, entry: TaskEntry) -> None:
        # The heap keeps its stale item; the tick skips items whose entry is dead.
        entry.alive = False
        if self._entries.get(entry.id) is entry:
            del self._entries[entry.id]

    def _finish(self, entry: TaskEntry, error: BaseException) -> None:
        """End every waiter of *entry* with its own copy of *error*."""
        self._drop(entry)
        for waiter in entry.waiters:
            waiter.fail(copy.copy(error))

    # -- notifications -------------------------------------------------------------------

    def notify(self, task: Task, *, trust: bool) -> bool:
        """A notifyHook snapshot; True when it names an awaited task.

        Progress is delivered at once. A final status is confirmed with one fetch before
        it resolves anyone, unless *trust*; stale and duplicate snapshots change nothing.
        """
        self._pace.hooks_heard = True
        entry = self._entries.get(task.id)
        if entry is None:
            self._early.remember(task, trust)
            return False
        self._notifications += 1
        if trust or not is_final(task):
            if not entry.confirm:
                # Behind a final hint awaiting its confirming fetch, progress is stale.
                self._apply(entry, task)
            return True
        if not entry.confirm:
            entry.confirm = True
            # Asked now, even while a poll naming it is on its way (a slow relay may hold
            # that one for long): answers apply in status order, so the later one cannot
            # undo a final status.
            self._confirms.append(entry)
            self._alarm.wake(-math.inf)
        return True

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
        now = self._clock.now()
        sent = 0
        per_id = self._source.per_id
        pace = self._pace
        confirms = [e for e in dict.fromkeys(self._confirms) if e.alive and e.confirm]
        self._confirms.clear()
        for entry in confirms:
            entry.confirm = False
            entry.in_flight = True
        lookups = [e for e in self._lookups if e.alive]
        self._lookups.clear()
        due: list[TaskEntry] = []
        heap = self._heap
        if heap and heap[0][0] <= now + _TIMER_SLACK:
            pace.new_tick()
            # Ids due a moment later ride along, so waiters registered a few
            # milliseconds apart (or answered by different requests) share requests
            # instead of each opening a tick.
            horizon = now + max(pace.ride(len(self._entries), per_id), _TIMER_SLACK)
            while heap and heap[0][0] <= horizon:
                when, _, entry = heapq.heappop(heap)
                if entry.alive and not entry.in_flight and entry.due == when:
                    entry.in_flight = True
                    due.append(entry)
            if due and not per_id:
                pace.fill(due, heap)
        for entry in lookups:
            sent += await self._send(group, [entry], single=True)
        if len(confirms) == 1:
            sent += await self._send(group, confirms, single=True)
        else:
            for chunk in pace.requests(confirms, per_id):
                sent += await self._send(group, chunk, single=per_id)
        for chunk in pace.requests(due, per_id):
            sent += await self._send(group, chunk, single=per_id)
        if sent:
            self._ticks += 1
            self._max_per_tick = max(self._max_per_tick, sent)

    async def _send(self, group: TaskGroup, entries: list[TaskEntry], single: bool) -> int:
        cost = len(entries) if single or self._source.per_id else 1
        delay = self._bucket.take(cost)
        if delay > 0:
            await self._clock.sleep(delay)
        self._requests += 1
        group.start_soon(self._poll, entries, single, self._clock.now())
        return 1

    async def _sleep(self) -> None:
        if self._confirms or self._lookups:
            await anyio.lowlevel.checkpoint()
            return
        await self._alarm.sleep_until(self._heap[0][0] if self._heap else math.inf)

    def _schedule(self, entry: TaskEntry, now: float, gap: float) -> None:
        due = now + gap
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        self._alarm.wake(due)

    # -- answers -------------------------------------------------------------------------

    async def _poll(
        self, entries: list[TaskEntry], single: bool, sent: float | None = None
    ) -> None:
        source = self._source
        try:
            items: list[dict[str, Any]]
            if single:
                items = []
                for entry in entries:
                    try:
                        items.append(await source.fetch_one(entry.id))
                    except TaskNotFoundError:
                        continue
            else:
                items = await source.fetch_batch([entry.id for entry in entries])
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
        self._successes += 1
        self._absorb(items, entries, checked=single or source.per_id, sent=sent)

    def _back_off(self, entries: list[TaskEntry], error: MJError) -> None:
        self._failures += 1
        live = []
        for entry in entries:
            entry.in_flight = False
            if entry.alive:
                entry.failures += 1
                live.append(entry)
        delay = self._pace.failed(live, self._failures, self._successes)
        logger.warning(
            "polling %d task(s) failed (%s: %s); retrying in %.2fs",
            len(entries),
            type(error).__name__,
            error,
            delay,
        )
        now = self._clock.now()
        for entry in live:
            self._schedule(entry, now, delay)

    def _absorb(
        self,
        items: list[dict[str, Any]],
        entries: list[TaskEntry],
        *,
        checked: bool,
        sent: float | None = None,
    ) -> None:
        """Apply one answer, then reschedule, re-check or retire every entry asked about.

        The hot path: most polled snapshots repeat the last one, so a JSON object whose
        status, progress and image URL are unchanged is skipped before decoding.

        The next poll is due a gap after *sent* (when the tick sent the request), not
        after the answer: ticks keep their pace instead of drifting by a round trip
        each, and the ids of one tick stay together however their answers straggle.
        A slow answer still leaves at least half a gap before the next request.
        """
        self._snapshots += len(items)
        live = self._entries
        apply = self._apply
        pace = self._pace
        now = self._clock.now()
        fast = pace.fast(len(live), self._source.per_id)
        seen: set[str] = set()
        for item in items:
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
            rank = STATUS_RANKS.get(status, 0)
            if rank != FINAL_RANK:
                percent = parse_progress(key[1])
                pace.observe(entry, item, status, rank, percent, now, fast)
                if not entry.watchers:
                    # Only a final snapshot reaches a plain await_task: decode later, if
                    # ever (a timeout's .last, a watcher joining).
                    self._apply_raw(entry, item, status, rank, percent)
                    continue
            try:
                task = decode_task(item)
            except DecodeError:
                continue
            apply(entry, task)
        unchecked: list[TaskEntry] = []
        for entry in entries:
            if not entry.alive:
                continue
            entry.in_flight = False
            if entry.failures:
                entry.failures = 0
                entry.cohort = 0
            if entry.id not in seen:
                if checked:
                    self._missing(entry, now)
                    continue
                # A batch answer silently omits ids; one fetch tells "unknown" from "lag".
                entry.in_flight = True
                unchecked.append(entry)
                continue
            entry.answered_at = now
            gap = pace.gap(entry, now, fast)
            if sent is not None:
                gap = max(sent + gap - now, gap * 0.5)
            self._schedule(entry, now, gap)
        if unchecked:
            self._lookups.extend(unchecked)
            self._alarm.wake(-math.inf)

    def _missing(self, entry: TaskEntry, now: float) -> None:
        if entry.missing_since is None:
            entry.missing_since = now
        grace = self.policy.not_found_grace
        if now - entry.missing_since >= grace:
            msg = f"task {entry.id} not found: the server does not know this id"
            self._finish(entry, TaskNotFoundError(msg, task_id=entry.id))
            return
        self._schedule(entry, now, max(_MIN_RECHECK, min(self.policy.interval, grace / 4)))

    def _apply(self, entry: TaskEntry, task: Task) -> None:
        """Deliver *task* to the waiters if it is newer than what they have seen."""
        rank = entry.advance(task.status, task.progress, task.image_url)
        if rank is None:
            return
        entry.last = task
        entry.last_raw = None
        self._changes += 1
        final = rank == FINAL_RANK
        for waiter in entry.waiters:
            waiter.push(task, final)
        if final:
            self._drop(entry)
            if task.status == "SUCCESS":
                self._pace.forecast.learn(task.raw, self._clock.now())

    def _apply_raw(
        self, entry: TaskEntry, item: dict[str, Any], status: str, rank: int, percent: int | None
    ) -> None:
        """Record an intermediate snapshot nobody asked to see, without decoding it."""
        if rank < entry.rank:
            return
        image_url = item.get("imageUrl")
        state = entry.advance(
            status, percent, image_url if type(image_url) is str and image_url else None
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
        self._lookups.clear()
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
