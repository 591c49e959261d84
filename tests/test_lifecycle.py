"""Closing a client while its owner is being cancelled releases everything (#8)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from _shared import FAST_POLL

import mjasync
from mjasync.simulator import Simulator


async def leaks_after(owner: Callable[[], Awaitable[None]]) -> tuple[list[str], list[Any]]:
    """Run *owner* to its end; return the loop's and the warnings' unclosed-resource reports."""
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reports.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await owner()
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    unclosed = [w for w in caught if "nclosed" in str(w.message)]
    return [r for r in reports if "nclosed" in r], unclosed


async def test_cancelling_the_owner_closes_the_session_and_propagates() -> None:
    """Ctrl-C or an app shutdown cancels the task that owns the client mid-wait.

    aclose must close the aiohttp session anyway (no "Unclosed client session") and the
    CancelledError must still reach the owner's caller.
    """
    clients: list[mjasync.Client] = []
    async with Simulator(dialect="plus", time_scale=0.005, queue_delay=1000.0) as sim:
        waiting = asyncio.Event()

        async def owner() -> None:
            async with mjasync.Client(sim.base_url, poll=FAST_POLL) as mj:
                clients.append(mj)
                submission = await mj.imagine("a fox")
                waiting.set()
                await mj.await_task(submission, timeout=30)

        async def cancel_it() -> None:
            task = asyncio.ensure_future(owner())
            await waiting.wait()
            await asyncio.sleep(0.03)  # the poller is running, a request may be in flight
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

        reports, unclosed = await leaks_after(cancel_it)

    assert clients[0].closed
    assert clients[0]._transport._session is None  # type: ignore[attr-defined]
    assert reports == []
    assert unclosed == []


async def test_an_anyio_cancel_scope_closes_the_session_too() -> None:
    """A timeout (cancel scope) around the whole block leaves nothing open either."""
    clients: list[mjasync.Client] = []
    async with Simulator(dialect="plus", time_scale=0.005, queue_delay=1000.0) as sim:

        async def owner() -> None:
            with anyio.move_on_after(0.1) as scope:
                async with mjasync.Client(sim.base_url, poll=FAST_POLL) as mj:
                    clients.append(mj)
                    await mj.await_task(await mj.imagine("a fox"), timeout=30)
            assert scope.cancelled_caught

        reports, unclosed = await leaks_after(owner)

    assert clients[0]._transport._session is None  # type: ignore[attr-defined]
    assert reports == []
    assert unclosed == []


async def test_a_cancellation_during_aclose_still_closes_the_transport() -> None:
    """Cancelled while aclose awaits the poller: the transport closes, then it re-raises."""
    closed: list[str] = []

    class Transport(mjasync.AsyncTransport):
        async def send(self, request: mjasync.Request) -> mjasync.Response:
            await anyio.sleep(10)  # every poll hangs
            raise AssertionError("unreachable")

        async def aclose(self) -> None:
            closed.append("transport")

    mj = mjasync.Client("http://mj.test", "k", transport=Transport(), poll=FAST_POLL)

    async def owner() -> None:
        async with mj:
            await mj.await_task("1700000000000001", timeout=30)

    task = asyncio.ensure_future(owner())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert closed == ["transport"]
    assert mj.closed
