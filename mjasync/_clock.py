"""The one clock the poller and every wait read: the time now, a wake-up at a time, a sleep.

Also the `TokenBucket` that meters the poller's requests on that clock.

The default, `LoopClock`, is the running event loop's clock (the one
`anyio.current_time` reads on asyncio), so deadlines and poll gaps are measured on the
same clock the loop schedules its timers by. A test passes another `Clock` (such as
`mjasync.testing.VirtualClock`) to `Client(clock=...)` and the poller, its rate
ceiling and every ``await_task``/``watch`` deadline run on that clock instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import anyio

__all__ = ["Clock", "LoopClock", "Timer", "TokenBucket", "resolve"]


class Timer(Protocol):
    """A pending wake-up; `cancel` makes sure it never fires."""

    def cancel(self) -> None:
        """Drop the wake-up (nothing happens if it already fired)."""


class Clock(Protocol):
    """Seconds on a monotonic clock, wake-ups at a time on it, and sleeping on it."""

    def now(self) -> float:
        """The current time, in seconds (only differences mean anything)."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call *callback* (in the event loop) once `now` reaches *when*."""

    async def sleep(self, seconds: float) -> None:
        """Return after *seconds* on this clock."""


def resolve(future: asyncio.Future[None]) -> None:
    """Complete *future* unless it is done (a wake-up that may come after a cancel)."""
    if not future.done():
        future.set_result(None)


class LoopClock:
    """The running event loop's clock: the default of every `Client`."""

    def now(self) -> float:
        """``loop.time()`` of the running loop."""
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """``loop.call_at``."""
        return asyncio.get_running_loop().call_at(when, callback)

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep``."""
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "LoopClock()"


class TokenBucket:
    """A ceiling of *rate* events per second on a `Clock`, with a one-second burst."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._clock = clock
        self.stamp = clock.now()

    def take(self, cost: float) -> float:
        """Spend *cost* tokens; return how long to wait before sending."""
        now = self._clock.now()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= cost
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
