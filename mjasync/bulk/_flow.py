"""How many of a run's tasks may be on the server at once: the runner's pacing."""

from __future__ import annotations

import math
import random

import anyio

from mjasync import backoff

__all__ = ["Flow"]


class Flow:
    """How many of this run's tasks may be on the server at once: an adaptive limit.

    Like TCP's congestion window. The limit starts at *ceiling* (the most tasks the
    jobs in flight can have) and every accepted submit raises it by ``1/limit``, about
    one more task per limit's worth of accepts, never above *ceiling*. A queue-full or
    429 answer cuts it to half the tasks in flight, never below 1, once per round:
    refusals of submits sent before the last cut carry no news. A task holds its place
    from its submit until it finishes, so a refused submit goes again when one of this
    run's tasks finishes and frees a place on the server; only when none of them is
    running (the server is full of others' work, or unreachable) does it wait a growing,
    jittered pause. So a ``concurrency`` far above what the server admits costs a few
    refused (unpaid) submits, not minutes of back-off.
    """

    def __init__(self, ceiling: int, base: float, cap: float) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0  # places taken: submits on the wire and tasks not yet finished
        self.round = 0
        self._base = base
        self._cap = cap
        self._streak = 0
        self._pause_until = 0.0
        self._changed = anyio.Event()
        self._rng = random.Random()

    @property
    def pause(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._pause_until - anyio.current_time())

    def has_room(self) -> bool:
        return self.pause == 0 and self.in_flight < max(1, math.floor(self.limit))

    async def acquire(self) -> int:
        """Take a place, waiting for room; returns the round the submit is sent in."""
        while not self.has_room():
            pause = self.pause
            if pause > 0:
                await anyio.sleep(pause)
            else:
                await self._changed.wait()
        self.in_flight += 1
        return self.round

    def release(self) -> None:
        """Give a place back: a refused or failed submit, or a task that finished."""
        self.in_flight -= 1
        self._notify()

    def accepted(self) -> None:
        """The submit holding a place was accepted: it keeps the place until it finishes."""
        self._streak = 0
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._notify()

    def refused(self, sent_in: int, retry_after: float | None, *, congestion: bool) -> float:
        """A submit (still holding its place) was refused; returns the pause it causes.

        *congestion* is a queue-full or 429 answer (cut the limit); otherwise the server
        was not reached at all (only pause). The pause is 0 while another submit or task
        of this run holds a place: its answer or its end is the signal to try again.
        """
        if sent_in == self.round:
            self.round += 1
            self._streak += 1
            if congestion:
                self.limit = max(1.0, min(self.limit, float(self.in_flight)) / 2.0)
        delay = retry_after or 0.0
        # Alone: no other submit of this run on the wire and none of its tasks running,
        # so no answer or finished task will come to say when to try again.
        alone = self.in_flight <= 1
        if alone or not congestion:
            pause = backoff(self._streak, base=self._base, cap=self._cap, rng=self._rng)
            delay = max(delay, pause)
        if delay > 0:
            self._pause_until = max(self._pause_until, anyio.current_time() + delay)
        return delay

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
