"""RedisBus against a real redis-server that each test starts on a free loopback port.

Without redis-server installed these tests skip, except under CI=true, where they fail:
.ci/run installs it, so a skip there would hide a broken bus.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _redis import PASSWORD, RedisServer, free_port, in_ci

from mjasync import RedisBus

try:
    import redis.asyncio as redis_asyncio
except ImportError:
    if in_ci():
        raise
    pytest.skip("redis-py is not installed (pip install 'mjasync[redis]')", allow_module_level=True)

CHANNEL = "test:notifications"
# Small settings so an outage and a reconnect take milliseconds, not seconds.
FAST: dict[str, Any] = {
    "channel": CHANNEL,
    "publish_timeout": 0.2,
    "connect_timeout": 0.2,
    # Dead after 1.5 intervals of silence: long enough that a loaded CI machine's stalled
    # event loop is not mistaken for an outage.
    "ping_interval": 0.25,
    "backoff": 0.01,
    "max_backoff": 0.04,
}


async def until(predicate: Callable[[], bool], *, within: float = 2.0) -> float:
    """Wait (bounded) until *predicate* holds; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within} s")
        await anyio.sleep(0.002)
    return time.monotonic() - started


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Any]:
    client = redis_asyncio.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def bus_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mjasync.bus" and r.levelno == level]


async def test_a_publish_on_one_worker_reaches_the_other(redis_server: RedisServer) -> None:
    """Two buses, two workers: each hears the other's notifications, not its own."""
    got_a: list[dict[str, Any]] = []
    got_b: list[dict[str, Any]] = []
    async with RedisBus(redis_server.url, **FAST) as a, RedisBus(redis_server.url, **FAST) as b:
        await a.start(got_a.append)
        await b.start(got_b.append)
        assert a.connected
        assert b.connected
        assert await a.publish(b'{"id": "1", "status": "SUCCESS"}')
        assert await b.publish({"id": "2", "status": "IN_PROGRESS", "progress": "40%"})
        await until(lambda: got_b != [] and got_a != [])
        await until(lambda: a.stats.echoes == 1 and b.stats.echoes == 1)
    assert got_b == [{"id": "1", "status": "SUCCESS"}]
    assert got_a == [{"id": "2", "status": "IN_PROGRESS", "progress": "40%"}]
    assert (a.stats.published, a.stats.received, a.stats.publish_failures) == (1, 1, 0)
    assert not a.connected


async def test_garbage_and_oversize_messages_are_dropped_and_counted(
    redis_server: RedisServer,
) -> None:
    """Whatever else lands on the channel is counted and dropped; real messages still flow."""
    got: list[dict[str, Any]] = []
    async with RedisBus(redis_server.url, max_message_bytes=1000, **FAST) as bus:
        await bus.start(got.append)
        async with raw_client(redis_server.url) as raw:
            for junk in (
                b"not json",
                b"\xff\xfe\x00garbage",
                b"[1, 2, 3]",
                json.dumps({"mjasync": 2, "origin": "x", "notification": {"id": "1"}}),
                json.dumps({"mjasync": 1, "origin": "x", "notification": "a string"}),
                json.dumps({"mjasync": 1, "origin": "x", "notification": {"id": "x" * 5000}}),
            ):
                await raw.publish(CHANNEL, junk)
            good = {"mjasync": 1, "origin": "another-worker", "notification": {"id": "ok"}}
            await raw.publish(CHANNEL, json.dumps(good))
        await until(lambda: got != [])
        assert not await bus.publish({"id": "y" * 2000})
        assert got == [{"id": "ok"}]
        assert bus.stats.dropped_invalid == 5
        assert bus.stats.dropped_oversize == 2  # one received, one refused on publish
        assert bus.stats.received == 1


async def test_the_subscriber_reconnects_after_redis_restarts(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed and restarted on the same port: reconnected, one warning and one info per bus."""
    caplog.set_level(logging.DEBUG, logger="mjasync.bus")
    got: list[dict[str, Any]] = []
    async with RedisBus(redis_server.url, **FAST) as a, RedisBus(redis_server.url, **FAST) as b:
        await a.start(lambda n: None)
        await b.start(got.append)
        await a.publish({"id": "before"})
        await until(lambda: len(got) == 1)

        redis_server.kill()
        await until(lambda: not b.connected)
        assert not await a.publish({"id": "lost-1"})
        assert not await a.publish({"id": "lost-2"})
        assert a.stats.publish_failures == 2
        # Let the subscriber fail several reconnect attempts before the server is back.
        await until(lambda: len(bus_records(caplog, logging.DEBUG)) >= 4)

        await anyio.to_thread.run_sync(redis_server.start)
        await until(lambda: b.connected)
        assert await a.publish({"id": "after"})
        await until(lambda: len(got) == 2)
        assert len(bus_records(caplog, logging.INFO)) == 2

        # A second outage right after the first (a flapping link) logs at DEBUG only.
        redis_server.kill()
        await until(lambda: not b.connected)
        assert not await a.publish({"id": "lost-3"})
        await anyio.to_thread.run_sync(redis_server.start)
        await until(lambda: b.connected)
        assert await a.publish({"id": "again"})
        await until(lambda: len(got) == 3)

    assert got == [{"id": "before"}, {"id": "after"}, {"id": "again"}]
    assert b.stats.reconnects == 2
    # a noticed the outage by publishing, b by its subscription: one warning each, however
    # many attempts failed, and one info each when it came back.
    assert len(bus_records(caplog, logging.WARNING)) == 2
    assert len(bus_records(caplog, logging.INFO)) == 2
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert "redis://:***@127.0.0.1" in bus_records(caplog, logging.WARNING)[0].getMessage()


async def test_redis_down_from_the_start_costs_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start() returns while retrying in the background; publish fails fast and is counted."""
    caplog.set_level(logging.DEBUG, logger="mjasync.bus")
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    async with RedisBus(url, **FAST) as bus:
        with anyio.fail_after(1):
            await bus.start(lambda n: None)
        assert not bus.connected
        started = time.monotonic()
        assert not await bus.publish({"id": "1"})
        assert time.monotonic() - started < 0.2
        await until(lambda: len(bus_records(caplog, logging.DEBUG)) >= 3)
        assert not await bus.publish({"id": "2"})
    assert bus.stats.publish_failures == 2
    assert bus.stats.published == 0
    (warning,) = bus_records(caplog, logging.WARNING)
    assert bus_records(caplog, logging.INFO) == []
    assert PASSWORD not in caplog.text
    assert "redis://:***@127.0.0.1" in warning.getMessage()


async def test_a_frozen_redis_costs_a_bounded_publish_and_a_reconnect(
    redis_server: RedisServer,
) -> None:
    """A server that stops answering: publish gives up in publish_timeout, PING notices it."""
    got: list[dict[str, Any]] = []
    async with RedisBus(redis_server.url, **FAST) as a, RedisBus(redis_server.url, **FAST) as b:
        await a.start(lambda n: None)
        await b.start(got.append)
        redis_server.freeze()
        started = time.monotonic()
        assert not await a.publish({"id": "stuck"})
        elapsed = time.monotonic() - started
        assert 0.15 < elapsed < 0.4
        assert a.stats.publish_failures == 1
        await until(lambda: not b.connected)  # the TCP link is up: only PING tells
        redis_server.thaw()
        await until(lambda: b.connected)
        assert await a.publish({"id": "after"})
        await until(lambda: {"id": "after"} in got)


@pytest.mark.parametrize("how", ["task-cancel", "cancel-scope"])
async def test_cancelling_aclose_still_releases_everything(
    redis_server: RedisServer, how: str
) -> None:
    """aclose() cancelled at its first await: connections closed, task gone, cancel raised."""
    bus = RedisBus(redis_server.url, **FAST)
    await bus.start(lambda n: None)
    assert await bus.publish({"id": "1"})  # a publish connection is open too
    if how == "task-cancel":
        closing = asyncio.ensure_future(bus.aclose())
        await asyncio.sleep(0)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    else:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await bus.aclose()
        assert scope.cancelled_caught
    assert not any(t.get_name() == "mjasync-bus" for t in asyncio.all_tasks())
    async with raw_client(redis_server.url) as raw:

        async def others() -> int:
            return len(await raw.client_list()) - 1  # all but this one

        for _ in range(400):  # the server notices closed sockets within a few ms
            if not await others():
                break
            await anyio.sleep(0.005)
        assert await others() == 0
        assert await raw.pubsub_numsub(CHANNEL) == [(CHANNEL.encode(), 0)]
    gc.collect()  # an unclosed connection would warn here (filterwarnings = error)
    assert bus.closed
