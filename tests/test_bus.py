"""The notification bus without a broker: the envelope, LocalBus, settings, and the seam.

RedisBus against a real redis-server is in test_bus_redis.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _fakeproxy import FakeProxy
from _shared import NO_POLL as SLOW

import mjasync
from mjasync import BusStats, LocalBus, LocalHub, RedisBus
from mjasync._redis_bus import redact_url
from mjasync.testing import task_payload

# Polling so slow that only a notification can finish a wait inside a test.


def envelope(notification: object, *, origin: str = "f" * 32, version: object = 1) -> bytes:
    """A message as another process's bus would send it (the wire format, spelled out)."""
    return json.dumps({"mjasync": version, "origin": origin, "notification": notification}).encode()


async def started(bus: LocalBus) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    await bus.start(got.append)
    return got


# -- LocalBus --------------------------------------------------------------------------------


async def test_a_publish_reaches_every_other_bus_but_not_its_own() -> None:
    """Each other bus on the hub gets the notification object; the publisher skips its echo."""
    hub = LocalHub()
    async with LocalBus(hub) as a, LocalBus(hub) as b, LocalBus(hub) as c:
        got_a, got_b, got_c = await started(a), await started(b), await started(c)
        assert await a.publish(b'{"id": "1", "status": "SUCCESS"}')
        assert await b.publish({"id": "2", "progress": "50%"})
        await anyio.lowlevel.checkpoint()
        assert got_a == [{"id": "2", "progress": "50%"}]
        assert got_b == [{"id": "1", "status": "SUCCESS"}]
        assert got_c == [{"id": "1", "status": "SUCCESS"}, {"id": "2", "progress": "50%"}]
        assert a.stats == BusStats(published=1, received=1, echoes=1, connected=True)
        assert c.stats == BusStats(received=2, connected=True)


async def test_delivery_happens_on_a_later_loop_turn() -> None:
    """The publisher's webhook route never runs another client's callback inside itself."""
    hub = LocalHub()
    async with LocalBus(hub) as a, LocalBus(hub) as b:
        await a.start(lambda n: None)
        got = await started(b)
        await a.publish({"id": "1"})
        assert got == []
        await anyio.lowlevel.checkpoint()
        assert got == [{"id": "1"}]


async def test_payloads_that_are_not_one_json_object_are_not_published() -> None:
    """Not JSON, not an object, a framing trick or over the cap: dropped and counted."""
    hub = LocalHub()
    async with LocalBus(hub, max_message_bytes=100) as a, LocalBus(hub) as b:
        got = await started(b)
        assert not await a.publish(b"not json")
        assert not await a.publish(b"[1, 2]")
        # Bytes that would smuggle a second "notification" key into the envelope.
        assert not await a.publish(b'{"id": "1"}, "notification": {"id": "evil"}')
        assert not await a.publish({"id": object()})
        assert not await a.publish(b'{"id": "' + b"x" * 200 + b'"}')
        assert not await a.publish({"id": "x" * 200})
        await anyio.lowlevel.checkpoint()
        assert got == []
        assert a.stats.dropped_invalid == 4
        assert a.stats.dropped_oversize == 2
        assert a.stats.published == 0


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param(b"not json", "dropped_invalid", id="not-json"),
        pytest.param(b"\xff\xfe\x00", "dropped_invalid", id="not-text"),
        pytest.param(b"[1, 2]", "dropped_invalid", id="array"),
        pytest.param(envelope({"id": "1"}, version=2), "dropped_invalid", id="newer-version"),
        pytest.param(envelope({"id": "1"}, version=True), "dropped_invalid", id="bool-version"),
        pytest.param(envelope(["id"]), "dropped_invalid", id="notification-not-object"),
        pytest.param(
            json.dumps({"mjasync": 1, "notification": {"id": "1"}}).encode(),
            "dropped_invalid",
            id="no-origin",
        ),
        pytest.param(12, "dropped_invalid", id="not-bytes"),
        pytest.param(envelope({"id": "x" * 2000}), "dropped_oversize", id="oversize"),
    ],
)
async def test_received_messages_are_checked_before_the_callback(
    message: object, field: str
) -> None:
    """A message that is not our envelope around an object is dropped and counted."""
    async with LocalBus(max_message_bytes=1000) as bus:
        got = await started(bus)
        bus._receive(message)
        bus._receive(envelope({"id": "ok"}))
        assert got == [{"id": "ok"}]
        assert getattr(bus.stats, field) == 1
        assert bus.stats.received == 1


async def test_a_failing_callback_is_logged_and_the_bus_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception in on_message never stops later deliveries."""
    got: list[dict[str, Any]] = []

    def callback(notification: dict[str, Any]) -> None:
        if notification["id"] == "bad":
            raise RuntimeError("boom")
        got.append(notification)

    hub = LocalHub()
    async with LocalBus(hub) as a, LocalBus(hub) as b:
        await b.start(callback)
        await a.publish({"id": "bad"})
        await a.publish({"id": "good"})
        with caplog.at_level(logging.ERROR, logger="mjasync.bus"):
            await anyio.lowlevel.checkpoint()
    assert got == [{"id": "good"}]
    assert any("callback raised" in r.getMessage() for r in caplog.records)


async def test_start_twice_and_use_after_close_are_refused() -> None:
    """start() once; after aclose() nothing is delivered and publish() counts a failure."""
    hub = LocalHub()
    a, b = LocalBus(hub), LocalBus(hub)
    got = await started(b)
    with pytest.raises(RuntimeError, match="already started"):
        await b.start(got.append)
    await a.publish({"id": "1"})
    await b.aclose()
    await b.aclose()
    await anyio.lowlevel.checkpoint()
    assert got == []
    assert b.closed
    assert not b.connected
    with pytest.raises(RuntimeError, match="closed"):
        await b.start(got.append)
    assert not await b.publish({"id": "2"})
    assert b.stats.publish_failures == 1
    await a.aclose()


# -- the seam into the client ----------------------------------------------------------------


async def test_a_notification_accepted_by_one_client_wakes_a_waiter_of_another() -> None:
    """Worker A accepts the callback and publishes it; worker B's waiter finishes through it.

    This is the wiring Client will do itself: publish what the webhook route accepted,
    and feed every bus message to the local-notification path (a confirming fetch).
    """
    proxy = FakeProxy()
    proxy.set("7", "IN_PROGRESS")
    hub = LocalHub()

    def worker() -> mjasync.Client:
        return mjasync.Client(
            "http://mj.test", "key", poll=SLOW, transport=proxy.transport, notify_hook="http://h/"
        )

    feeding: set[asyncio.Task[Any]] = set()
    async with worker() as mj_a, worker() as mj_b, LocalBus(hub) as bus_a, LocalBus(hub) as bus_b:

        def feed_b(notification: dict[str, Any]) -> None:
            coro = mj_b.handle_notification(notification, token=mj_b.notify_token)
            feeding.add(asyncio.ensure_future(coro))

        await bus_a.start(lambda n: None)
        await bus_b.start(feed_b)
        waiting = asyncio.ensure_future(mj_b.await_task("7"))
        await anyio.sleep(0.01)
        proxy.set("7", "SUCCESS")
        body = json.dumps(task_payload("7", "SUCCESS")).encode()
        local = await mj_a.handle_notification(body, token=mj_a.notify_token)
        assert local.accepted
        assert not local.woke  # nobody waits on worker A
        assert await bus_a.publish(body)
        with anyio.fail_after(2):
            task = await waiting
        (fed,) = feeding
        assert (await fed).woke
    assert task.status == "SUCCESS"
    assert [route for _, route, _ in proxy.log] == ["fetch"]


# -- settings, secrets, the optional dependency -------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/0", "redis://user:***@host/0"),
        ("rediss://s3cret@host", "rediss://***@host"),
        ("redis://:p@ss:w0rd@host", "redis://:***@host"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("unix://:s3cret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    """redact_url replaces the password wherever a Redis URL can carry one."""
    assert redact_url(url) == shown


async def test_a_redis_bus_repr_hides_the_password() -> None:
    """The repr names host and channel, never the password."""
    async with RedisBus("redis://:s3cret@127.0.0.1:6379/0", channel="app:hooks") as bus:
        assert "s3cret" not in repr(bus)
        assert repr(bus) == "RedisBus('redis://:***@127.0.0.1:6379/0', channel='app:hooks')"


async def test_aclose_is_bounded_when_a_connection_never_finishes_closing() -> None:
    """A close that hangs is given up after connect_timeout; aclose() still returns."""
    bus = RedisBus("redis://127.0.0.1:1/0", connect_timeout=0.05)
    hung = anyio.Event()

    async def never_closes() -> None:
        hung.set()
        await anyio.sleep_forever()

    bus._publisher.aclose = never_closes  # type: ignore[method-assign]
    with anyio.fail_after(1):
        await bus.aclose()
    assert hung.is_set()
    assert bus.closed


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"url": "http://:s3cret@host/"}, id="scheme"),
        pytest.param({"url": "redis://:s3cret@host:notaport/"}, id="port"),
        pytest.param({"channel": ""}, id="channel"),
        pytest.param({"publish_timeout": 0}, id="publish-timeout"),
        pytest.param({"connect_timeout": float("nan")}, id="connect-timeout"),
        pytest.param({"ping_interval": float("inf")}, id="ping-interval"),
        pytest.param({"backoff": 2.0, "max_backoff": 1.0}, id="backoff"),
        pytest.param({"max_connections": 0}, id="connections"),
        pytest.param({"max_message_bytes": 1}, id="max-bytes"),
    ],
)
def test_bad_settings_raise_invalid_request(kwargs: dict[str, Any]) -> None:
    """Every bad setting is an InvalidRequestError at construction, password redacted."""
    kwargs.setdefault("url", "redis://:s3cret@127.0.0.1:6379/0")
    with pytest.raises(mjasync.InvalidRequestError) as caught:
        RedisBus(**kwargs)
    assert "s3cret" not in str(caught.value)


def test_redis_bus_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, RedisBus raises ImportError telling which extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'mjasync\[redis\]'"):
        RedisBus("redis://127.0.0.1:6379/0")
    assert LocalBus().stats == BusStats()


@pytest.mark.slow
def test_importing_mjasync_and_the_bus_does_not_import_redis() -> None:
    """redis-py is loaded by RedisBus only, so mjasync imports without the extra."""
    code = (
        "import sys; sys.modules['redis'] = None; "
        "import mjasync, mjasync._bus, mjasync._redis_bus; "
        "assert mjasync._bus.LocalBus().stats.published == 0; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
