"""When each awaited id is next asked about: the poller's schedule, apart from its I/O.

An id's next poll comes from its state (`Pace.gap`): the first look after `first_poll`; a
queued task ever less often up to `max_interval`; a running one every `interval`, and
every *tick* from shortly before the finish its `Forecast` estimates until a while after
it. An estimate only ever brings a poll earlier than `interval` would, so a wrong one
costs at most a few extra ticks, never a missed result.

The tick itself (`Pace.fast`) comes from the client's request budget: one request per
`batch_size` awaited ids per `PollPolicy.tick`, never more than
`max_requests_per_second`.
"""

from __future__ import annotations

import math
from typing import Any

from ._forecast import Forecast, Progress, epoch_seconds
from ._models import STATUS_RANKS
from ._policy import PollPolicy
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

    def learn(self, raw: dict[str, Any], now: float) -> None:
        """A task finished with SUCCESS: its timings teach the forecast."""
        self.forecast.learn(raw, now)

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
