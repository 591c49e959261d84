"""When each awaited id is next asked about: the poller's schedule, apart from its I/O.

An id's next poll comes from its state (`Pace.gap`): the first look after `first_poll`; a
queued task ever less often up to `max_interval`; a running one every `interval`, and
every *tick* from shortly before the finish its `Forecast` estimates until a while after
it. An estimate only ever brings a poll earlier than `interval` would, so a wrong one
costs at most a few extra ticks, never a missed result.

The tick itself (`Pace.fast`) comes from the client's request budget: one request per
`batch_size` awaited ids per `PollPolicy.tick`, never more than
`max_requests_per_second`.

Which ids share a request is decided here too (`Pace.requests`): up to `batch_size` of
them, except that a batch that keeps failing is split in two (`Pace.failed`), and its
halves again while any other request succeeds, so an id the server chokes on ends up
alone instead of failing every id that shares its request until their deadlines.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from ._forecast import Forecast, Progress, epoch_seconds
from ._models import STATUS_RANKS
from ._policy import PollPolicy, backoff
from ._waiters import TaskEntry

__all__ = ["Pace"]

# A queued task's poll gap grows by this factor per poll, up to PollPolicy.max_interval.
_QUEUED_GROWTH = 1.5
# How long a task stays at the tick pace after its estimated finish, in intervals: an
# estimate that errs late by less is still seen within a tick; a task that overruns it
# (stuck, or far slower than estimated) goes back to the interval pace.
_NEAR_AFTER = 2.0
_RUNNING_RANK = STATUS_RANKS["IN_PROGRESS"]
# The most the budget of many awaited ids may speed up the tick pace when only some of
# them are near their finish: finishes are seen sooner, the rate stays bounded.
_MOST_SPEEDUP = 2.0


class Pace:
    """The schedule of one poller: its forecast, its tick pace and each id's next gap.

    Args:
        policy: intervals, tick, batch size and rate ceiling.
        hooks: the client sends a notifyHook, so polling is only the safety net once
            notifications are heard.
    """

    def __init__(self, policy: PollPolicy, *, hooks: bool) -> None:
        self.policy = policy
        self.forecast = Forecast()
        self._hooks = hooks
        # Relays often strip notifyHook: poll at the slow safety-net rate only once a
        # notification has proved that callbacks really arrive.
        self.hooks_heard = False
        # Ids given the tick pace since the last tick began, and in the tick before.
        self._near_now = 0
        self._near_last = 0
        self._cohorts = itertools.count(1)
        self._rng = random.Random()

    def new_tick(self) -> None:
        """A tick begins: the count of ids near their finish starts again."""
        self._near_last, self._near_now = self._near_now, 0

    def fast(self, awaited: int, per_id: bool) -> float:
        """The tick pace: the gap between polls of a task near its finish.

        The budget is one request per `batch_size` awaited ids per `tick` (never more
        than `max_requests_per_second`). With up to one batch of ids that is a request
        every tick; with more, the ids near their finish (last tick's count) may fill
        fewer requests than the budget pays for, and the ticks come sooner, up to
        twice as often. When the source asks id by id (*per_id*), each id costs a
        request of its own, so nothing is faster than `interval`.
        """
        policy = self.policy
        if per_id:
            return policy.interval
        fast = min(policy.tick, policy.interval)
        size = policy.batch_size
        batches = -(-awaited // size)
        if batches <= 1:
            return fast
        near = -(-max(self._near_last, 1) // size)
        if near >= batches:
            return fast
        paced = fast * near / batches
        return max(paced, fast / _MOST_SPEEDUP, near / policy.max_requests_per_second)

    def ride(self, awaited: int, per_id: bool) -> float:
        """How far ahead of its due time an id may ride along with a tick."""
        return min(self.fast(awaited, per_id), self.policy.interval * 0.25)

    def requests(self, entries: list[TaskEntry], per_id: bool) -> Iterator[list[TaskEntry]]:
        """*entries* as requests: by cohort, up to `batch_size` each (one id each for a
        source that asks id by id)."""
        size = 1 if per_id else self.policy.batch_size
        cohorts: dict[int, list[TaskEntry]] = {}
        for entry in entries:
            cohorts.setdefault(entry.cohort, []).append(entry)
        for members in cohorts.values():
            for start in range(0, len(members), size):
                yield members[start : start + size]

    def fill(self, due: list[TaskEntry], heap: list[tuple[float, int, TaskEntry]]) -> None:
        """The last request of a tick has room: the ids due soonest (from *heap*) fill it.

        Only ids that may share a request with any other (cohort 0) fill it; an id of a
        batch that kept failing waits for its own turn.
        """
        room = -sum(1 for entry in due if not entry.cohort) % self.policy.batch_size
        apart = []
        while room and heap:
            item = heapq.heappop(heap)
            entry = item[2]
            if entry.alive and not entry.in_flight and entry.due == item[0]:
                if entry.cohort:
                    apart.append(item)
                    continue
                entry.in_flight = True
                due.append(entry)
                room -= 1
        for item in apart:
            heapq.heappush(heap, item)

    def failed(self, entries: list[TaskEntry], failures: int, successes: int) -> float:
        """A request naming *entries* failed: seconds until they are asked about again.

        *failures* counts the poller's failed requests in a row (the back-off grows with
        it), *successes* its good answers so far.

        A batch that failed twice in a row is split in two: a transient error costs one
        retry as a whole, a bad id is found by halving. A batch split before is split
        again only if some request succeeded since, so a server that fails everything
        costs at most twice the requests, not one per id.
        """
        policy = self.policy
        delay = backoff(
            failures + 1,
            base=policy.interval,
            cap=max(policy.max_interval, policy.interval),
            rng=self._rng,
            jitter=policy.jitter,
        )
        if len(entries) < 2 or max(entry.failures for entry in entries) < 2:
            return delay
        first = entries[0]
        if first.cohort and successes <= first.split_at:
            return delay
        half = len(entries) // 2
        for part in (entries[:half], entries[half:]):
            cohort = next(self._cohorts)
            for entry in part:
                entry.cohort = cohort
                entry.split_at = successes
        return delay

    def observe(
        self,
        entry: TaskEntry,
        item: dict[str, Any],
        status: str,
        rank: int,
        percent: int | None,
        now: float,
        fast: float,
    ) -> None:
        """Feed a changed, unfinished snapshot to the forecast (before it is applied)."""
        if status != entry.status:
            entry.gap = 0.0  # any change of status: a queued task's gap starts again
        changed = False
        if entry.start is None:
            start = epoch_seconds(item.get("startTime"))
            if start is not None:
                entry.start = start
                self.forecast.saw(start, now)
                changed = True
        if entry.action is None:
            action = item.get("action")
            entry.action = action if type(action) is str else None
        if rank == _RUNNING_RANK and percent is not None:
            progress = entry.pace
            if progress is None:
                progress = entry.pace = Progress()
            if progress.step(percent, entry.answered_at, now, vague=self.policy.interval):
                changed = True
        if changed and self.policy.predict:
            self._estimate(entry, fast)

    def _estimate(self, entry: TaskEntry, fast: float) -> None:
        """Place *entry*'s tick-pace window around its estimated finish."""
        forecast = self.forecast
        entry.history = forecast.history
        finish, spread = forecast.finish(entry.pace, entry.action, entry.start)
        if finish == entry.finish:
            return
        entry.finish = finish
        # A tick of lead, so the poll before the finish lands no later than it, and a
        # while after it: a late finish within that is still seen within a tick.
        entry.near_from = finish - spread - fast
        entry.near_until = finish + spread + _NEAR_AFTER * self.policy.interval

    def gap(self, entry: TaskEntry, now: float, fast: float) -> float:
        """Seconds until *entry* is asked about again, from its state and the policy.

        A task near its estimated finish: every tick. Otherwise a running one every
        ``interval`` and a queued one ever less often, up to ``max_interval``; either
        way no later than the start of its tick-pace window. Once notifications
        arrive (``notify_hook``), never more often than ``webhook_interval``.
        """
        policy = self.policy
        if (
            entry.finish == math.inf
            and entry.history != self.forecast.history
            and entry.start is not None
            and policy.predict
        ):
            # A first task of another action finished since: its history may apply.
            self._estimate(entry, fast)
        if entry.near_from <= now + fast * 0.5 and now < entry.near_until:
            gap = fast
            self._near_now += 1
        else:
            if entry.rank == _RUNNING_RANK:
                gap = policy.interval
            else:
                ceiling = max(policy.max_interval, policy.interval)
                gap = min(ceiling, entry.gap * _QUEUED_GROWTH) if entry.gap else policy.interval
                entry.gap = gap
            if now < entry.near_from < now + gap:
                gap = max(fast, entry.near_from - now)
        if self._hooks and self.hooks_heard:
            gap = max(gap, policy.webhook_interval)
        return gap
