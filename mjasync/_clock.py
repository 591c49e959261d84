"""The one clock the poller and every wait read: the time now, a wake-up at a time, a sleep.

Also the `TokenBucket` that meters the poller's requests on that clock, and the `Alarm`
the poller sleeps on until its next due time.

The default, `LoopClock`, is the running event loop's clock (the one
`anyio.current_time` reads on asyncio), so deadlines and poll gaps are measured on the
same clock the loop schedules its timers by. A test passes another `Clock` (such as
`mjasync.testing.VirtualClock`) to `Client(clock=...)` and the poller, its rate
ceiling and every ``await_task``/``watch`` deadline run on that clock instead.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from typing import Protocol

import anyio

__all__ = ["Alarm", "Clock", "LoopClock", "Timer", "TokenBucket", "resolve"]


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


class Alarm:
    """A sleep until a time on a `Clock` that `wake` cuts short for anything due sooner."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._future: asyncio.Future[None] | None = None
        self._until = -math.inf

    async def sleep_until(self, until: float) -> None:
        """Return at *until* (never, for ``math.inf``) or at the first `wake` before it."""
        future = asyncio.get_running_loop().create_future()
        self._future = future
        self._until = until
        handle = None
        if until != math.inf:
            handle = self._clock.call_at(until, functools.partial(resolve, future))
        try:
            await future
        finally:
            if handle is not None:
                handle.cancel()
            self._future = None
            self._until = -math.inf

    def wake(self, due: float) -> None:
        """Something is now due at *due*: end the sleep if that is before its end."""
        if due < self._until and self._future is not None:
            resolve(self._future)
