"""When will a task finish: the estimates behind the poller's tick schedule.

Two sources, both from what the server sends:

* **the task's own progress**: the first two progress steps of a running task whose
  moments are known (a step happened between the poll that did not see it and the one
  that did; the midpoint is taken) give its pace, and the pace the time left. Midjourney
  reports uneven steps (0, 15, 31, ... 93 %) with the last one short of 100 %, so this
  errs early, which costs a few polls and never a late result;
* **this client's history**: how long finished tasks of the same action ran, from the
  server's ``startTime`` to its ``finishTime`` (a low quantile of the last
  `_HISTORY` of them), added to a running task's ``startTime``. Used when the task's
  own pace is not known yet.

The server's epoch times are put on the client's clock with one offset: the smallest
``(moment the client saw a snapshot) - (server time it reports as past)`` over every
``startTime`` and ``finishTime`` seen. That bound is never early: it is the true offset
plus the quickest any event was seen, and it absorbs a skewed server clock.

The poller owns the schedule; this module only answers "when", never "poll now".
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from ._serde import epoch_ms

__all__ = ["Forecast", "Progress", "epoch_seconds"]

# Finished runs remembered per action, and the quantile of them an estimate uses: low,
# so the estimate errs early (an early estimate costs a few polls, a late one lag).
_HISTORY = 50
_QUANTILE = 0.1
# Longer runs than a day are not a task's run but a server's clock jumping.
_LONGEST_RUN = 86_400.0


def epoch_seconds(value: object) -> float | None:
    """A server time (epoch milliseconds, as a number or digits) in seconds; None if unset."""
    ms = epoch_ms(value)
    return None if ms is None else ms / 1000


class Progress:
    """What one task's progress told so far: its first timed step and its pace estimate."""

    __slots__ = ("anchor", "finish", "last")

    def __init__(self) -> None:
        self.last = -1
        self.anchor: tuple[int, float] | None = None
        self.finish = math.inf

    def step(self, percent: int, before: float | None, at: float) -> bool:
        """A running task first seen at *percent* at *at* (not yet at *before*).

        Returns True when the pace estimate (`finish`) changed.
        """
        if percent <= self.last:
            return False
        self.last = percent
        if percent >= 100:
            # Some servers show 100 % a moment before SUCCESS: due now.
            self.finish = at
            return True
        if before is None:
            return False  # the step may have happened any time before: not a timed step
        moment = (before + at) / 2
        anchor = self.anchor
        if anchor is None:
            self.anchor = (percent, moment)
            return False
        done, then = anchor
        if moment <= then:
            return False
        self.finish = moment + (100 - percent) * (moment - then) / (percent - done)
        return True


class Forecast:
    """Finish estimates for one client: the server clock offset and the runs it has seen."""

    def __init__(self) -> None:
        self.offset = math.inf
        self._runs: dict[str, deque[float]] = {}
        self._typical: dict[str, float] = {}

    def saw(self, server_time: float, at: float) -> None:
        """An event stamped *server_time* (epoch seconds) had happened by *at* (client clock)."""
        offset = at - server_time
        if offset < self.offset:
            self.offset = offset

    def learn(self, raw: dict[str, Any], at: float) -> None:
        """A task seen SUCCESS at *at*: remember how long it ran, by action."""
        start = epoch_seconds(raw.get("startTime"))
        finish = epoch_seconds(raw.get("finishTime"))
        if finish is not None:
            self.saw(finish, at)
        action = raw.get("action")
        if start is None or finish is None or not isinstance(action, str):
            return
        run = finish - start
        if not 0 <= run <= _LONGEST_RUN:
            return
        runs = self._runs.get(action)
        if runs is None:
            runs = self._runs[action] = deque(maxlen=_HISTORY)
        runs.append(run)
        ordered = sorted(runs)
        self._typical[action] = ordered[int(len(ordered) * _QUANTILE)]

    def typical_run(self, action: str | None) -> float | None:
        """A short run of *action* on this client (seconds, server clock), if any finished."""
        return self._typical.get(action) if action is not None else None

    def finish(self, progress: Progress | None, action: str | None, start: float | None) -> float:
        """The estimated finish of a task on the client's clock; ``inf`` when unknown.

        Its own pace first; else the history of its action from its ``startTime``.
        """
        if progress is not None and progress.finish != math.inf:
            return progress.finish
        run = self.typical_run(action)
        if run is None or start is None or self.offset == math.inf:
            return math.inf
        return start + self.offset + run
