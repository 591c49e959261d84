"""Helpers for testing code that uses mjasync, without a network and without waiting.

``MockTransport`` answers every request with a handler you write; ``json_response``,
``task_payload`` and ``submit_payload`` build realistic wire bodies, and ``decode_task``
makes a ``Task`` of a task body the way the client does. ``VirtualClock``
runs a client's poller and its waits' deadlines on virtual time. For end-to-end
tests, run ``mjasync.simulator.Simulator`` instead: a real server that speaks the API.

```python
transport = MockTransport(lambda request: json_response(submit_payload("123")))
async with mjasync.Client("http://mj.test", transport=transport) as mj:
    sub = await mj.imagine("a cat")
assert transport.requests[0].json == {"prompt": "a cat"}
```
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ._clock import Clock, Timer, resolve
from ._models import Task
from ._serde import decode_task as _decode_task
from ._transport import AsyncTransport, Request, Response

__all__ = [
    "Clock",
    "MockTransport",
    "VirtualClock",
    "decode_task",
    "json_response",
    "submit_payload",
    "task_payload",
]

_T = TypeVar("_T")
# Loop turns one settling may take; far more than any chain of hand-offs in a client.
_MAX_SETTLE_TURNS = 10_000
# Real seconds `VirtualClock.run` waits, in all, for work that no virtual wake-up drives
# (a retry's real backoff, a real socket).
_REAL_WAIT = 5.0

Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport(AsyncTransport):
    """Answers every request with *handler* (sync or async) and records the requests.

    A handler may raise any `mjasync.TransportError` to simulate a network failure.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        """Record *request* and return the handler's response."""
        self.requests.append(request)
        response = self.handler(request)
        if not isinstance(response, Response):
            response = await response
        return response

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True


class _VirtualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A `Clock` whose time moves only when the test moves it.

    Pass it as ``Client(clock=...)``: poll gaps, the status-request ceiling and every
    ``await_task``/``watch`` deadline then run on it, and a test of minutes of polling
    takes milliseconds. `advance` moves time forward, firing each wake-up due on the
    way in order, and lets every task run until it waits again before moving on; `run`
    advances until an awaitable is done. A `MockTransport` answer takes no virtual time.

    ```python
    clock = VirtualClock()
    async with mjasync.Client("http://mj.test", transport=transport, clock=clock) as mj:
        with pytest.raises(mjasync.TaskTimeoutError):
            await clock.run(mj.await_task("1", timeout=600))
        assert clock.now() == pytest.approx(600, abs=2)
    ```
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call *callback* once `advance` (or `run`) reaches *when*."""
        timer = _VirtualTimer(callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        """Return once virtual time has moved *seconds* on."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_at(self._now + max(seconds, 0.0), functools.partial(resolve, future))
        try:
            await future
        finally:
            timer.cancel()

    async def advance(self, seconds: float) -> None:
        """Move time *seconds* forward, firing what falls due on the way, in order."""
        target = self._now + seconds
        await self._settle()
        while self._fire_next(target):
            await self._settle()
        self._now = max(self._now, target)
        await self._settle()

    async def run(self, awaitable: Awaitable[_T], *, limit: float = 86_400.0) -> _T:
        """Await *awaitable* while moving time forward, one wake-up at a time.

        Raises:
            TimeoutError: *limit* virtual seconds passed, or nothing was left to wake
                it on this clock and it did not finish within a few real seconds.
        """
        task = asyncio.ensure_future(awaitable)
        deadline = self._now + limit
        real = 0.0
        try:
            while True:
                await self._settle()
                if task.done():
                    return task.result()
                if not self._fire_next(deadline):
                    if real >= _REAL_WAIT or self._now >= deadline:
                        msg = f"not done after {limit:g} virtual seconds"
                        raise TimeoutError(msg)
                    # Nothing due on this clock: the work waits on real time.
                    await asyncio.wait({task}, timeout=0.005)
                    real += 0.005
        finally:
            if not task.done():
                task.cancel()

    def _fire_next(self, limit: float) -> bool:
        """Fire the next live wake-up due by *limit*; False when there is none."""
        timers = self._timers
        while timers and timers[0][0] <= limit:
            when, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback()
            return True
        return False

    async def _settle(self) -> None:
        """Let every other task run until each one waits for something."""
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for _ in range(_MAX_SETTLE_TURNS):
            await asyncio.sleep(0)
            # A task suspended on a future whose wake-up is already queued (a task
            # group's join, woken by its children's done-callbacks) only looks idle: the
            # loop's queue of ready callbacks must be empty too (asyncio's own loop
            # exposes it; other loops fall back to the tasks alone).
            if getattr(loop, "_ready", None):
                continue
            if all(task is me or task.done() or _waiting(task) for task in asyncio.all_tasks()):
                return

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:g})"


def _waiting(task: asyncio.Task[Any]) -> bool:
    # The future a task is suspended on, as anyio's wait_all_tasks_blocked reads it.
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response whose body is *body* encoded as JSON."""
    merged = {
        "content-type": "application/json",
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    return Response(status=status, headers=merged, content=json.dumps(body).encode())


def submit_payload(
    task_id: str | None = "1700000000000001",
    code: int = 1,
    description: str = "Submit success",
    **properties: Any,
) -> dict[str, Any]:
    """A submit answer ``{code, description, result, properties}``."""
    return {"code": code, "description": description, "result": task_id, "properties": properties}


def decode_task(payload: object) -> Task:
    """The `Task` the client makes of one task JSON object, as it would from a server.

    For a test that needs a `Task` without a server: ``decode_task(task_payload("1"))``,
    or a body captured from a real proxy.

    Raises:
        mjasync.DecodeError: *payload* is not a task object.
    """
    return _decode_task(payload)


def task_payload(
    task_id: str = "1700000000000001",
    status: str = "SUCCESS",
    *,
    progress: str | None = None,
    action: str = "IMAGINE",
    prompt: str = "a cat",
    image_url: str | None = None,
    buttons: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A task object as PLUS sends it; a SUCCESS imagine gets the grid's nine buttons."""
    done = status == "SUCCESS"
    if progress is None:
        progress = {"SUCCESS": "100%", "IN_PROGRESS": "50%", "SUBMITTED": "0%"}.get(status, "")
    if buttons is None:
        buttons = _grid_buttons("0ddb91a0-af46-4ae9-8e8e-c271074eb6e6") if done else []
    payload: dict[str, Any] = {
        "id": task_id,
        "action": action,
        "status": status,
        "prompt": prompt,
        "promptEn": prompt,
        "description": f"/imagine {prompt}",
        "state": None,
        "submitTime": 1748339029401,
        "startTime": 1748339030665 if status not in {"NOT_START", "SUBMITTED"} else None,
        "finishTime": 1748339072775 if done or status == "FAILURE" else None,
        "progress": progress,
        "imageUrl": image_url
        if image_url is not None
        else (f"https://cdn.example/{task_id}.png" if done else None),
        "failReason": None,
        "properties": {"finalPrompt": prompt},
        "buttons": buttons,
    }
    payload.update(extra)
    return payload


def _grid_buttons(job_hash: str) -> list[dict[str, Any]]:
    def button(custom_id: str, label: str = "", emoji: str = "") -> dict[str, Any]:
        return {"customId": custom_id, "emoji": emoji, "label": label, "type": 2, "style": 2}

    buttons = [button(f"MJ::JOB::upsample::{i}::{job_hash}", f"U{i}") for i in range(1, 5)]
    buttons.append(button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"))
    buttons += [button(f"MJ::JOB::variation::{i}::{job_hash}", f"V{i}") for i in range(1, 5)]
    return buttons
