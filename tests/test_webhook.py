"""notifyHook: token checks, parsing, and waiters woken by notifications."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import pytest
from _fakeproxy import FakeProxy
from _servers import webhook_site
from _shared import NO_POLL as SLOW

import mjasync
from mjasync.simulator import Faults, Simulator
from mjasync.testing import task_payload

# Polling so slow that only a notification can finish a wait inside a test.
HOOK = "http://127.0.0.1:9/mj-hook"


def hook_client(proxy: FakeProxy, poll: mjasync.PollPolicy = SLOW, **kw: Any) -> mjasync.Client:
    return mjasync.Client(
        "http://mj.test", "key", poll=poll, transport=proxy.transport, notify_hook=HOOK, **kw
    )


def body(task_id: str, status: str, progress: str | None = None) -> bytes:
    return json.dumps(task_payload(task_id, status, progress=progress)).encode()


@asynccontextmanager
async def hook_server(make_client: Callable[[str], mjasync.Client]) -> AsyncIterator[Any]:
    """A real aiohttp app on 127.0.0.1 with ``mj.webhook_handler`` mounted at /mj-hook."""
    clients: list[mjasync.Client] = []

    def mount(url: str) -> Any:
        clients.append(make_client(url))
        return clients[0].webhook_handler

    async with webhook_site(mount) as url, clients[0] as mj:
        yield mj, url


# -- the token ---------------------------------------------------------------------------


async def test_every_submit_carries_the_hook_with_its_token() -> None:
    """notify_hook=URL sends URL?token=<secret>; the secret is random unless given."""
    proxy = FakeProxy()
    sent: list[object] = []
    proxy.transport.handler = lambda r: (
        sent.append(r.json),
        mjasync.Response(200, {}, b'{"code":1,"result":"1"}'),
    )[1]
    async with hook_client(proxy) as mj:
        await mj.imagine("a cat")
        hook = sent[0]["notifyHook"]  # type: ignore[index]
        assert parse_qs(urlsplit(hook).query)["token"] == [mj.notify_token]
        assert len(mj.notify_token) >= 32
    other = mjasync.Client("http://mj.test", notify_hook=HOOK, notify_token="fixed-secret")
    assert other.notify_token == "fixed-secret"
    assert other.notify_token != mj.notify_token
    await other.aclose()


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("", 401), ("nope", 403)])
async def test_forged_notification_is_refused_and_changes_nothing(
    token: str | None, status: int
) -> None:
    """A missing or wrong token answers 401/403 and wakes no one."""
    proxy = FakeProxy()
    proxy.set("1", "IN_PROGRESS")
    async with hook_client(proxy) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await anyio.sleep(0.01)
        result = await mj.handle_notification(body("1", "SUCCESS"), token=token)
        assert result.status == status
        assert not result.accepted
        assert result.task is None
        await anyio.sleep(0.05)
        assert not waiting.done()
        assert mj.poll_stats.notifications == 0
        assert proxy.log == []
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_bad_bodies_are_refused() -> None:
    """413 over the cap, 400 for non-JSON and non-task JSON; a decoded mapping is fine."""
    proxy = FakeProxy()
    async with hook_client(proxy) as mj:
        token = mj.notify_token
        big = b"{" + b" " * 2000 + b"}"
        assert (await mj.handle_notification(big, token=token, max_bytes=1000)).status == 413
        assert (await mj.handle_notification(b"<html>", token=token)).status == 400
        assert (await mj.handle_notification(b'{"status": "SUCCESS"}', token=token)).status == 400
        assert (await mj.handle_notification(b"[1, 2]", token=token)).status == 400
        ok = await mj.handle_notification(task_payload("5", "SUCCESS"), token=token)
        assert ok.status == 200
        assert ok.accepted
        assert ok.task is not None
        assert ok.task.id == "5"
        assert not ok.woke
        text = await mj.handle_notification(body("5", "SUCCESS").decode(), token=token)
        assert text.status == 200


# -- waking ------------------------------------------------------------------------------


async def test_final_notification_is_confirmed_by_one_fetch() -> None:
    """A SUCCESS hint wakes the waiter after exactly one fetch, with no list polling."""
    proxy = FakeProxy()
    proxy.set("1", "SUCCESS")
    async with hook_client(proxy) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await anyio.sleep(0.01)
        started = time.monotonic()
        result = await mj.handle_notification(body("1", "SUCCESS"), token=mj.notify_token)
        assert result.woke
        task = await waiting
        assert time.monotonic() - started < 0.5
    assert task.status == "SUCCESS"
    assert [route for _, route, _ in proxy.log] == ["fetch"]


async def test_unconfirmed_final_notification_does_not_resolve() -> None:
    """When the fetch disagrees, the waiter keeps waiting, and polling settles it later."""
    proxy = FakeProxy()
    proxy.set("1", "IN_PROGRESS", "30%")
    policy = mjasync.PollPolicy(
        interval=0.02, max_interval=0.02, first_poll=30, webhook_interval=0.02, jitter=0
    )
    async with hook_client(proxy, policy) as mj:
        seen: list[str] = []
        waiting = asyncio.ensure_future(
            mj.await_task("1", on_progress=lambda t: seen.append(t.status))
        )
        await anyio.sleep(0.01)
        await mj.handle_notification(body("1", "SUCCESS"), token=mj.notify_token)
        await anyio.sleep(0.01)
        assert not waiting.done()
        assert proxy.log[0][1] == "fetch"
        proxy.set("1", "FAILURE", failReason="banned")
        with pytest.raises(mjasync.TaskFailedError):
            await waiting
    assert seen == ["IN_PROGRESS", "FAILURE"]


async def test_trusted_notifications_resolve_without_a_fetch() -> None:
    """trust_notifications=True takes a final hint at its word."""
    proxy = FakeProxy()
    async with hook_client(proxy, trust_notifications=True) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await anyio.sleep(0.01)
        await mj.handle_notification(body("1", "SUCCESS"), token=mj.notify_token)
        assert (await waiting).status == "SUCCESS"
    assert proxy.log == []


async def test_duplicate_and_late_notifications_never_go_backwards() -> None:
    """Progress hints apply at once; repeats and older ones change nothing."""
    proxy = FakeProxy()
    proxy.set("1", "SUCCESS")
    async with hook_client(proxy) as mj:
        seen: list[tuple[str, int | None]] = []
        waiting = asyncio.ensure_future(
            mj.await_task("1", on_progress=lambda t: seen.append((t.status, t.progress)))
        )
        await anyio.sleep(0.01)
        token = mj.notify_token
        for status, progress in [
            ("IN_PROGRESS", "50%"),
            ("IN_PROGRESS", "50%"),
            ("IN_PROGRESS", "20%"),
            ("SUBMITTED", "0%"),
            ("SUCCESS", "100%"),
            ("SUCCESS", "100%"),
            ("IN_PROGRESS", "90%"),
        ]:
            assert (await mj.handle_notification(body("1", status, progress), token=token)).accepted
        await waiting
    assert seen == [("IN_PROGRESS", 50), ("SUCCESS", 100)]
    assert [route for _, route, _ in proxy.log] == ["fetch"]


async def test_notification_before_the_wait_is_not_lost() -> None:
    """A hook that beats await_task (fast task, slow caller) still wakes the later waiter."""
    proxy = FakeProxy()
    proxy.set("1", "SUCCESS")
    async with hook_client(proxy) as mj:
        result = await mj.handle_notification(body("1", "SUCCESS"), token=mj.notify_token)
        assert result.accepted
        assert not result.woke
        started = time.monotonic()
        assert (await mj.await_task("1")).status == "SUCCESS"
        assert time.monotonic() - started < 0.5


# -- end to end with the simulator -------------------------------------------------------


async def test_webhook_wakes_waiters_long_before_the_poll_interval() -> None:
    """With 30 s polling, simulator callbacks finish every wait in well under a second."""
    async with (
        Simulator(dialect="plus", time_scale=0.005, slots=50, notify=True) as sim,
        hook_server(lambda url: mjasync.Client(sim.base_url, "k", poll=SLOW, notify_hook=url)) as (
            mj,
            _,
        ),
    ):
        started = time.monotonic()
        subs = await asyncio.gather(*(mj.imagine(f"crane {i}") for i in range(20)))
        tasks = await asyncio.gather(*(mj.await_task(s, timeout=20) for s in subs))
        elapsed = time.monotonic() - started
        assert {t.status for t in tasks} == {"SUCCESS"}
        assert elapsed < 1.0
        # No polling happened: the only status requests are the confirmations of final
        # hints, coalesced into batches when several arrive together.
        confirmations = (
            sim.requests["POST /mj/task/list-by-condition"]
            + sim.requests["GET /mj/task/{id}/fetch"]
        )
        assert 0 < confirmations <= 20
        assert mj.poll_stats.status_requests == confirmations
        assert any(n.delivered_ok for n in sim.notifications)
        assert mj.poll_stats.notifications > 0


async def test_forged_http_notifications_are_refused() -> None:
    """Over HTTP: no token 401, wrong token 403, oversize 413; the waiter is untouched."""
    proxy = FakeProxy()
    proxy.set("1", "IN_PROGRESS")
    async with (
        hook_server(
            lambda url: mjasync.Client(
                "http://mj.test", poll=SLOW, transport=proxy.transport, notify_hook=url
            )
        ) as (mj, url),
        aiohttp.ClientSession() as http,
    ):
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await anyio.sleep(0.01)
        forged = body("1", "SUCCESS")
        async with http.post(url, data=forged) as response:
            assert response.status == 401
        async with http.post(url, params={"token": "guess"}, data=forged) as response:
            assert response.status == 403
        token = mj.notify_token
        async with http.post(
            url, params={"token": token}, data=io.BytesIO(b" " * (2 << 20))
        ) as response:
            assert response.status == 413
        async with http.post(url, params={"token": token}, data=b"not json") as response:
            assert response.status == 400
        await anyio.sleep(0.05)
        assert not waiting.done()
        assert proxy.log == []
        async with http.post(url, params={"token": token}, data=forged) as response:
            assert response.status == 200
        proxy.set("1", "SUCCESS")
        async with http.post(url, params={"token": token}, data=forged) as response:
            assert response.status == 200
        assert (await waiting).status == "SUCCESS"


async def test_lost_callbacks_cost_latency_not_a_hang() -> None:
    """Every callback dropped: the safety-net polling still finishes each wait."""
    policy = mjasync.PollPolicy(
        interval=0.01, max_interval=0.02, first_poll=0.01, webhook_interval=0.03
    )
    async with (
        Simulator(
            dialect="trueai", time_scale=0.002, slots=20, faults=Faults(notify_drop=1.0)
        ) as sim,
        hook_server(
            lambda url: mjasync.Client(sim.base_url, "k", poll=policy, notify_hook=url)
        ) as (
            mj,
            _,
        ),
    ):
        subs = await asyncio.gather(*(mj.imagine(f"heron {i}") for i in range(5)))
        tasks = await asyncio.gather(*(mj.await_task(s, timeout=20) for s in subs))
        assert {t.status for t in tasks} == {"SUCCESS"}
        assert mj.poll_stats.notifications == 0
        assert sim.requests["POST /mj/task/list-by-condition"] > 0


async def test_duplicated_and_reordered_callbacks_are_harmless() -> None:
    """Simulator callbacks sent twice and out of order: snapshots still only move forward."""
    async with (
        Simulator(
            dialect="plus",
            time_scale=0.005,
            slots=20,
            faults=Faults(notify_duplicate=1.0, notify_reorder=0.5),
        ) as sim,
        hook_server(lambda url: mjasync.Client(sim.base_url, "k", poll=SLOW, notify_hook=url)) as (
            mj,
            _,
        ),
    ):
        ranks = {"NOT_START": 0, "SUBMITTED": 1, "IN_PROGRESS": 2, "SUCCESS": 3}
        seen: dict[str, list[tuple[int, int]]] = {}

        def record(task: mjasync.Task) -> None:
            seen.setdefault(task.id, []).append((ranks[task.status], task.progress or 0))

        subs = await asyncio.gather(*(mj.imagine(f"ibis {i}") for i in range(8)))
        tasks = await asyncio.gather(
            *(mj.await_task(s, timeout=20, on_progress=record) for s in subs)
        )
        assert {t.status for t in tasks} == {"SUCCESS"}
        for history in seen.values():
            assert history == sorted(history)
            assert len(history) == len(set(history))
