"""The connection pool under load: a request's timeout starts when it has a connection, and
running out of pool wait is a ConnectError (nothing was sent), so a submit is retried.

`benchmarks/bench_pool.py` runs the same scenario at the size the issue reported.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync import AiohttpTransport, ConnectError, InvalidRequestError, RetryPolicy


@asynccontextmanager
async def slow_proxy(delay: float, received: collections.Counter[str]) -> AsyncIterator[TestServer]:
    """An imagine route that records each prompt and answers after *delay* seconds."""

    async def imagine(request: web.Request) -> web.Response:
        body = await request.json()
        received[body["prompt"]] += 1
        await asyncio.sleep(delay)
        return web.json_response({"code": 1, "description": "ok", "result": "1700000000000001"})

    async def fetch(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response({"id": request.match_info["id"], "status": "IN_PROGRESS"})

    app = web.Application()
    app.router.add_post("/mj/submit/imagine", imagine)
    app.router.add_get("/mj/task/{id}/fetch", fetch)
    async with TestServer(app) as server:
        yield server


async def test_submits_beyond_the_pool_wait_their_turn_instead_of_timing_out() -> None:
    """20 submits through 4 connections, each answered in 0.05 s, with a 0.15 s timeout.

    Five waves take 0.25 s: when the timeout counted the wait for a connection, the
    later waves timed out, some of them after the server had the submit (paid, and
    reported failed) and some before it was ever sent (a safe retry skipped).
    """
    received: collections.Counter[str] = collections.Counter()
    async with slow_proxy(0.05, received) as server:
        transport = AiohttpTransport(timeout=0.15, limit_per_host=4)
        async with mjasync.Client(str(server.make_url("/")), "k", transport=transport) as mj:
            results = await asyncio.gather(
                *(mj.imagine(f"prompt {i}") for i in range(20)), return_exceptions=True
            )

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sorted(received) == sorted(f"prompt {i}" for i in range(20))
    assert set(received.values()) == {1}


async def test_a_caller_session_sizes_the_pool_admission() -> None:
    """With your own session, its connector's limit_per_host is the pool that is waited for."""
    received: collections.Counter[str] = collections.Counter()
    async with slow_proxy(0.04, received) as server:
        connector = aiohttp.TCPConnector(limit_per_host=2)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            mjasync.Client(str(server.make_url("/")), "k", session=session, timeout=0.1) as mj,
        ):
            results = await asyncio.gather(
                *(mj.imagine(f"prompt {i}") for i in range(8)), return_exceptions=True
            )

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert set(received.values()) == {1}
    assert len(received) == 8


async def test_running_out_of_pool_wait_is_a_connect_error_and_nothing_was_sent() -> None:
    """No free connection in pool_timeout: ConnectError, NOT_SENT, and the server saw nothing."""
    received: collections.Counter[str] = collections.Counter()
    async with slow_proxy(0.2, received) as server:
        transport = AiohttpTransport(limit_per_host=1, pool_timeout=0.03)
        async with mjasync.Client(
            str(server.make_url("/")), "k", transport=transport, retry=RetryPolicy(attempts=1)
        ) as mj:
            holder = asyncio.ensure_future(mj.fetch("1700000000000001"))
            await asyncio.sleep(0.01)
            with pytest.raises(ConnectError) as info:
                await mj.imagine("queued")
            await holder

    assert "pool_timeout" in str(info.value)
    assert "nothing was sent" in str(info.value)
    assert info.value.reason == "no free connection"  # this process's pool, not the server
    assert mjasync.delivery_of(info.value) is mjasync.Delivery.NOT_SENT
    assert received == {}


async def test_a_submit_that_ran_out_of_pool_wait_is_retried_and_sent_once() -> None:
    """The pool-wait ConnectError is retried like any never-sent submit, and arrives once."""
    received: collections.Counter[str] = collections.Counter()
    async with slow_proxy(0.1, received) as server:
        transport = AiohttpTransport(limit_per_host=1, pool_timeout=0.03)
        retry = RetryPolicy(attempts=6, backoff=0.02, max_backoff=0.05)
        async with mjasync.Client(
            str(server.make_url("/")), "k", transport=transport, retry=retry
        ) as mj:
            holder = asyncio.ensure_future(mj.imagine("first"))
            await asyncio.sleep(0.01)
            submission = await mj.imagine("second")
            await holder
            sent = mj.requests_sent

    assert submission.task_id == "1700000000000001"
    assert received == {"first": 1, "second": 1}
    assert sent > 2  # the second submit waited out at least one pool_timeout


def test_pool_timeout_is_a_client_option() -> None:
    """Client(pool_timeout=) reaches the default transport; None means no bound."""
    assert isinstance(mjasync.Client("http://mj.test", "k")._transport, AiohttpTransport)
    bounded = mjasync.Client("http://mj.test", "k", pool_timeout=5.0)._transport
    unbounded = mjasync.Client("http://mj.test", "k", pool_timeout=None)._transport

    assert isinstance(bounded, AiohttpTransport)
    assert isinstance(unbounded, AiohttpTransport)
    assert bounded.pool_timeout == 5.0
    assert unbounded.pool_timeout is None


@pytest.mark.parametrize("value", [0, -1.0])
def test_bad_pool_timeout_is_refused(value: float) -> None:
    """A pool_timeout that is not > 0 is refused at construction."""
    with pytest.raises(InvalidRequestError):
        mjasync.Client("http://mj.test", "k", pool_timeout=value)
