"""Many workers (#12): the shared token, and a NotificationBus wired into Client.

Two clients on one `LocalHub` stand for two worker processes: a callback accepted by one
must wake the waiter of the other. The same wiring on Redis, with real uvicorn workers,
is in test_workers_redis.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import anyio.lowlevel
import attrs
import pytest
from _fakeproxy import FakeProxy
from _servers import webhook_site
from _shared import FAST_POLL
from _shared import NO_POLL as SLOW

import mjasync
from mjasync import _notify
from mjasync._bus import OnMessage
from mjasync.simulator import Simulator
from mjasync.testing import task_payload

# NO_POLL: polling so slow that only a notification can finish a wait inside a test.
FAST = attrs.evolve(FAST_POLL, webhook_interval=0.01)
HOOK = "http://127.0.0.1:9/mj-hook"


def worker(
    proxy: FakeProxy,
    bus: mjasync.NotificationBus | None,
    poll: mjasync.PollPolicy = SLOW,
    **kw: Any,
) -> mjasync.Client:
    """One worker process's client: same proxy, same token, its own bus on the hub."""
    return mjasync.Client(
        "http://mj.test",
        "key",
        poll=poll,
        transport=proxy.transport,
        notify_hook=HOOK,
        notify_token="shared-secret",
        notify_bus=bus,
        **kw,
    )


def body(task_id: str, status: str, progress: str | None = None) -> bytes:
    return json.dumps(task_payload(task_id, status, progress=progress)).encode()


async def settle() -> None:
    """A few loop turns: spawned publishes run, LocalHub deliveries land."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


# -- the shared token ------------------------------------------------------------------------


async def test_notify_token_defaults_to_mj_notify_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every client of the app shares $MJ_NOTIFY_TOKEN; an explicit notify_token= wins."""
    monkeypatch.setenv("MJ_NOTIFY_TOKEN", "from-the-environment")
    async with (
        mjasync.Client("http://mj.test", notify_hook=HOOK) as a,
        mjasync.Client("http://mj.test", notify_hook=HOOK) as b,
        mjasync.Client("http://mj.test", notify_hook=HOOK, notify_token="explicit") as c,
    ):
        assert a.notify_token == b.notify_token == "from-the-environment"
        assert a.notify_hook is not None
        assert parse_qs(urlsplit(a.notify_hook).query)["token"] == ["from-the-environment"]
        assert c.notify_token == "explicit"
    monkeypatch.setenv("MJ_NOTIFY_TOKEN", "")
    async with (
        mjasync.Client("http://mj.test") as d,
        mjasync.Client("http://mj.test") as e,
    ):
        assert len(d.notify_token) >= 32
        assert d.notify_token != e.notify_token


async def test_a_wrong_token_warns_once_per_client_naming_neither_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """403s are a sign of unshared tokens: one warning per client, no token in it."""
    proxy = FakeProxy()
    async with worker(proxy, None) as a, worker(proxy, None) as b:
        with caplog.at_level(logging.WARNING, logger="mjasync"):
            assert (await a.handle_notification(body("1", "SUCCESS"), token=None)).status == 401
            assert not caplog.records  # no token at all is a stray request, not a config bug
            for _ in range(3):
                refused = await a.handle_notification(body("1", "SUCCESS"), token="other-t0ken")
                assert refused.status == 403
            assert len(caplog.records) == 1
            await b.handle_notification(body("1", "SUCCESS"), token="other-t0ken")
            assert len(caplog.records) == 2
    assert "MJ_NOTIFY_TOKEN" in caplog.records[0].getMessage()
    assert "shared-secret" not in caplog.text
    assert "other-t0ken" not in caplog.text


def webhook_server(mj: mjasync.Client) -> AbstractAsyncContextManager[str]:
    """A real aiohttp app on 127.0.0.1 serving ``mj.webhook_handler``; yields its URL."""
    return webhook_site(lambda _url: mj.webhook_handler)


async def test_the_aiohttp_handler_warns_once_about_a_wrong_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """webhook_handler refuses before reading the body, and warns the same single time."""
    async with (
        worker(FakeProxy(), None) as mj,
        webhook_server(mj) as url,
        aiohttp.ClientSession() as http,
    ):
        with caplog.at_level(logging.WARNING, logger="mjasync"):
            for _ in range(2):
                async with http.post(url, params={"token": "n0pe"}, data=body("1", "SUCCESS")) as r:
                    assert r.status == 403
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "n0pe" not in caplog.text
    assert "shared-secret" not in caplog.text


# -- a notification accepted by one worker wakes the waiter of another -------------------------


async def test_a_callback_on_worker_b_wakes_the_waiter_on_worker_a() -> None:
    """B accepts it and publishes it once; A confirms with one fetch; nothing bounces."""
    proxy = FakeProxy()
    proxy.set("7", "IN_PROGRESS")
    hub = mjasync.LocalHub()
    bus_a, bus_b, bus_c = mjasync.LocalBus(hub), mjasync.LocalBus(hub), mjasync.LocalBus(hub)
    async with worker(proxy, bus_a) as a, worker(proxy, bus_b) as b, worker(proxy, bus_c):
        progress: list[int | None] = []
        waiting = asyncio.ensure_future(
            a.await_task("7", on_progress=lambda t: progress.append(t.progress))
        )
        await settle()
        assert (
            await b.handle_notification(body("7", "IN_PROGRESS", "40%"), token="shared-secret")
        ).accepted
        proxy.set("7", "SUCCESS")
        result = await b.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        assert result.accepted
        assert not result.woke  # nobody waits on worker B
        with anyio.fail_after(2):
            task = await waiting
        await settle()
    assert task.status == "SUCCESS"
    assert progress == [40, 100]
    assert [route for _, route, _ in proxy.log] == ["fetch"]  # the one confirming fetch
    assert a.poll_stats.notifications == 2
    # Published by B only, heard once by each other worker, never published again.
    assert bus_b.stats.published == 2
    assert (bus_a.stats.published, bus_c.stats.published) == (0, 0)
    assert (bus_a.stats.received, bus_c.stats.received) == (2, 2)
    assert bus_b.stats.received == 0


async def test_trusted_notifications_from_the_bus_resolve_without_a_request() -> None:
    """With trust_notifications=True a bus message resolves the waiter by itself."""
    proxy = FakeProxy()
    hub = mjasync.LocalHub()
    async with (
        worker(proxy, mjasync.LocalBus(hub), trust_notifications=True) as a,
        worker(proxy, mjasync.LocalBus(hub)) as b,
    ):
        waiting = asyncio.ensure_future(a.await_task("7"))
        await settle()
        await b.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        with anyio.fail_after(2):
            assert (await waiting).status == "SUCCESS"
    assert proxy.log == []


async def test_an_early_notification_from_the_bus_is_kept_for_a_later_wait() -> None:
    """The task finished before anyone on worker A awaited it: the wait still ends at once."""
    proxy = FakeProxy()
    proxy.set("7", "SUCCESS")
    hub = mjasync.LocalHub()
    async with worker(proxy, mjasync.LocalBus(hub)) as a, worker(proxy, mjasync.LocalBus(hub)) as b:
        await b.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        await settle()
        with anyio.fail_after(2):
            assert (await a.await_task("7")).status == "SUCCESS"
    assert [route for _, route, _ in proxy.log] == ["fetch"]


async def test_the_webhook_route_on_another_worker_finishes_real_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator calls worker B's aiohttp route for tasks worker A submitted and awaits.

    A has no webhook route at all and polls every 30 s: only B's bus can finish its waits.
    The token comes from MJ_NOTIFY_TOKEN, as it would in every process of a deployment.
    """
    monkeypatch.setenv("MJ_NOTIFY_TOKEN", "deployment-secret")
    hub = mjasync.LocalHub()
    async with Simulator(dialect="plus", time_scale=0.002, seed=3) as sim:
        b = mjasync.Client(sim.base_url, "k", poll=SLOW, notify_bus=mjasync.LocalBus(hub))
        async with b, webhook_server(b) as url:
            a = mjasync.Client(
                sim.base_url, "k", poll=SLOW, notify_hook=url, notify_bus=mjasync.LocalBus(hub)
            )
            async with a:
                subs = [await a.imagine(f"a heron, take {i}") for i in range(3)]
                with anyio.fail_after(10):
                    done = await asyncio.gather(*(a.await_task(s) for s in subs))
                assert [t.status for t in done] == ["SUCCESS"] * 3
                # Confirming fetches only (a batch when two confirm at once): no polling.
                status_requests = (
                    sim.requests["GET /mj/task/{id}/fetch"]
                    + sim.requests["POST /mj/task/list-by-condition"]
                )
                assert 1 <= status_requests <= 3
                assert a.poll_stats.status_requests == status_requests
                bus_b = b.notify_bus
                assert bus_b is not None
                assert bus_b.stats.published >= 3  # every final status, progress too
                assert bus_b.stats.publish_failures == 0


# -- what the bus must not break ---------------------------------------------------------------


async def test_garbage_on_the_bus_is_dropped_and_counted() -> None:
    """Not an envelope, or an envelope around something that is not a task: counted, ignored."""
    proxy = FakeProxy()
    proxy.set("7", "SUCCESS")
    hub = mjasync.LocalHub()
    bus_a = mjasync.LocalBus(hub)
    async with worker(proxy, bus_a) as a, mjasync.LocalBus(hub) as stranger:
        await stranger.start(lambda n: None)
        waiting = asyncio.ensure_future(a.await_task("7"))
        await settle()
        bus_a._receive(b"\x00not json at all")
        assert await stranger.publish({"status": "SUCCESS"})  # an object, but no task id
        await settle()
        assert bus_a.stats.dropped_invalid == 2
        assert not waiting.done()
        assert await stranger.publish(task_payload("7", "SUCCESS"))
        with anyio.fail_after(2):
            assert (await waiting).status == "SUCCESS"
    assert bus_a.stats.received == 2


async def test_with_the_bus_down_polling_finishes_the_wait() -> None:
    """Worker B's publish fails (counted); worker A's poller finishes the wait anyway."""
    proxy = FakeProxy()
    proxy.set("7", "IN_PROGRESS")
    hub = mjasync.LocalHub()
    bus_b = mjasync.LocalBus(hub)
    async with worker(proxy, mjasync.LocalBus(hub), FAST) as a, worker(proxy, bus_b) as b:
        waiting = asyncio.ensure_future(a.await_task("7"))
        await bus_b.aclose()  # the broker is gone
        proxy.set("7", "SUCCESS")
        assert (await b.handle_notification(body("7", "SUCCESS"), token="shared-secret")).accepted
        with anyio.fail_after(2):
            assert (await waiting).status == "SUCCESS"
        await settle()
    assert bus_b.stats.publish_failures == 1
    assert a.poll_stats.status_requests >= 1


class SlowBus(mjasync.NotificationBus):
    """A broker whose publish and close take time; records what happened and in what order."""

    def __init__(self, events: list[str], *, publish_gate: asyncio.Event | None = None) -> None:
        super().__init__()
        self.events = events
        self.publish_gate = publish_gate

    async def start(self, on_message: OnMessage) -> None:
        self._begin(on_message)
        self._connected = True

    async def publish(self, notification: bytes | Mapping[str, Any]) -> bool:
        if self.publish_gate is not None:
            await self.publish_gate.wait()
        self._published += 1
        self.events.append("published")
        return True

    async def aclose(self) -> None:
        self._closed = True
        self._connected = False

        async def release() -> None:
            await asyncio.sleep(0.02)
            self.events.append("bus closed")

        # As the interface requires: the release finishes even if the caller is cancelled.
        releasing = asyncio.ensure_future(release())
        try:
            await asyncio.shield(releasing)
        except asyncio.CancelledError:
            await releasing
            raise


class RecordingTransport(mjasync.AsyncTransport):
    def __init__(self, proxy: FakeProxy, events: list[str]) -> None:
        self.proxy = proxy
        self.events = events

    async def send(self, request: mjasync.Request) -> mjasync.Response:
        return await self.proxy.transport.send(request)

    async def aclose(self) -> None:
        self.events.append("transport closed")


async def test_the_route_answers_without_waiting_for_the_broker() -> None:
    """handle_notification returns before the publish ends; aclose lets the publish finish."""
    events: list[str] = []
    gate = asyncio.Event()
    proxy = FakeProxy()
    mj = worker(proxy, SlowBus(events, publish_gate=gate))
    async with mj:
        result = await mj.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        assert result.accepted
        await settle()
        assert events == []
        asyncio.get_running_loop().call_later(0.02, gate.set)
    assert events == ["published", "bus closed"]


async def test_a_publish_that_never_ends_is_cancelled_at_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aclose waits for pending publishes only so long, then closes the bus regardless."""
    monkeypatch.setattr(_notify, "_BUS_CLOSE_WAIT", 0.02)
    events: list[str] = []
    mj = worker(FakeProxy(), SlowBus(events, publish_gate=asyncio.Event()))
    async with mj:
        await mj.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        await settle()
    assert events == ["bus closed"]


async def test_aclose_closes_the_bus_before_the_transport() -> None:
    """The bus stops (no more wake-ups) before the session it would fetch through closes."""
    events: list[str] = []
    proxy = FakeProxy()
    bus = SlowBus(events)
    async with mjasync.Client(
        "http://mj.test", "k", transport=RecordingTransport(proxy, events), notify_bus=bus
    ) as mj:
        assert mj.notify_bus is bus
        assert bus.connected
    assert events == ["bus closed", "transport closed"]
    assert bus.closed


async def test_a_cancelled_owner_still_closes_the_bus_and_the_transport() -> None:
    """Ctrl-C or an app shutdown mid-wait: bus and transport both released, then it re-raises."""
    events: list[str] = []
    proxy = FakeProxy()
    proxy.set("7", "IN_PROGRESS")
    bus = SlowBus(events)
    mj = mjasync.Client(
        "http://mj.test",
        "k",
        poll=SLOW,
        transport=RecordingTransport(proxy, events),
        notify_bus=bus,
    )

    async def owner() -> None:
        async with mj:
            await mj.await_task("7")

    task = asyncio.ensure_future(owner())
    await anyio.sleep(0.01)
    task.cancel()
    await anyio.sleep(0.005)  # mid-way through the bus's close
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["bus closed", "transport closed"]
    assert bus.closed
    assert mj.closed


async def test_a_client_used_without_async_with_starts_its_bus_at_the_first_wait() -> None:
    """No ``async with``: the first wait subscribes the bus; aclose still closes it."""
    proxy = FakeProxy()
    proxy.set("7", "SUCCESS")
    hub = mjasync.LocalHub()
    bus_a = mjasync.LocalBus(hub)
    a = worker(proxy, bus_a)
    assert not bus_a.connected
    async with worker(proxy, mjasync.LocalBus(hub)) as b:
        waiting = asyncio.ensure_future(a.await_task("7"))
        await settle()
        assert bus_a.connected
        await b.handle_notification(body("7", "SUCCESS"), token="shared-secret")
        with anyio.fail_after(2):
            assert (await waiting).status == "SUCCESS"
    await a.aclose()
    assert bus_a.closed


async def test_a_client_closed_before_its_bus_started_closes_it_too() -> None:
    """The first wait scheduled the subscription; aclose right after still releases the bus."""
    events: list[str] = []
    bus = SlowBus(events)
    mj = worker(FakeProxy(), bus)
    waiting = asyncio.ensure_future(mj.await_task("7"))
    await anyio.lowlevel.checkpoint()  # registered; the subscription is scheduled, not run yet
    assert not bus.connected
    await mj.aclose()
    with pytest.raises(mjasync.ClientClosedError):
        await waiting
    assert bus.closed
    assert events == ["bus closed"]


def test_notify_bus_must_be_a_notification_bus() -> None:
    """A URL or a redis client where the bus goes is refused before anything starts."""
    with pytest.raises(mjasync.InvalidRequestError, match="NotificationBus"):
        mjasync.Client("http://mj.test", notify_bus="redis://localhost")  # type: ignore[arg-type]
