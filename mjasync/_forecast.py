"""When will a task finish: the estimates behind the poller's tick schedule.

Two sources, both from what the server sends:

* **the task's own progress**: two progress steps of a running task whose moments are
  known (a step happened between the poll that did not see it and the one that did)
  give its pace, and the pace the time left, with how far off that may be (see
  `Progress`). Midjourney reports uneven steps (0, 15, 31, ... 93 %) with the last one
  short of 100 %, so the pace errs early, which costs a few polls, not lag;
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
    """What one task's progress told so far: its timed steps and the estimate they give.

    A step is timed when the poll before the one that saw it did not see it: it
    happened in ``(before, at]``. Two timed steps give the pace, the pace the finish;
    the half-widths of their windows, carried through, give how far off that can be
    (`spread`). Of every earlier timed step as the anchor, the one with the smallest
    spread wins. An estimate spread wider than half the time it has left (or than
    *vague*, whichever is larger) says too little to act on, and is not kept.
    """

    __slots__ = ("finish", "last", "spread", "steps")

    def __init__(self) -> None:
        self.last = -1
        self.steps: list[tuple[int, float, float]] = []
        self.finish = math.inf
        self.spread = 0.0

    def step(self, percent: int, before: float | None, at: float, *, vague: float) -> bool:
        """A running task first seen at *percent* at *at* (not yet at *before*).

        Returns True when the estimate (`finish`, `spread`) changed.
        """
        if percent <= self.last:
            return False
        self.last = percent
        if percent >= 100:
            # Some servers show 100 % a moment before SUCCESS: due now.
            self.finish, self.spread = at, 0.0
            return True
        if before is None:
            return False  # the step may have happened any time before: not a timed step
        moment, half = (before + at) / 2, (at - before) / 2
        best: tuple[float, float] | None = None
        for done, then, width in self.steps:
            if moment <= then:
                continue
            ratio = (100 - percent) / (percent - done)  # time left per time taken
            finish = moment + ratio * (moment - then)
            spread = (1 + ratio) * half + ratio * width
            if best is None or spread < best[1]:
                best = (finish, spread)
        self.steps.append((percent, moment, half))
        if best is None or best[1] > max(vague, (best[0] - at) / 2):
            return False
        self.finish, self.spread = best
        return True


class Forecast:
    """Finish estimates for one client: the server clock offset and the runs it has seen."""

    def __init__(self) -> None:
        self.offset = math.inf
        # How many actions have a history: it changes when the first task of an action
        # finishes, which is when an estimate from history may newly apply.
        self.history = 0
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
            self.history += 1
        runs.append(run)
        ordered = sorted(runs)
        self._typical[action] = ordered[int(len(ordered) * _QUANTILE)]

    def typical_run(self, action: str | None) -> float | None:
        """A short run of *action* on this client (seconds, server clock), if any finished."""
        return self._typical.get(action) if action is not None else None

    def finish(
        self, progress: Progress | None, action: str | None, start: float | None
    ) -> tuple[float, float]:
        """The estimated finish of a task on the client's clock, and how far off it may
        be either way; ``(inf, 0)`` when unknown.

        Its own pace first; else the history of its action from its ``startTime`` (a
        short run of it: the estimate errs early, so its spread is 0).
        """
        if progress is not None and progress.finish != math.inf:
            return progress.finish, progress.spread
        run = self.typical_run(action)
        if run is None or start is None or self.offset == math.inf:
            return math.inf, 0.0
        return start + self.offset + run, 0.0
