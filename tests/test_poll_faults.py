"""The poller when requests fail or the server answers partly: nobody starves, nothing bursts.

Found in review of the paced poller (#11): a failed fetch on a fetch-only server ended
every wait of its request with an ExceptionGroup; an id the server chokes on failed the
ids that shared its request until their deadlines; per-id fetches and the fetches of ids
a batch answer left out went past `max_requests_per_second` in bursts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from urllib.parse import urlsplit

import anyio
import pytest
from _fakeproxy import FakeProxy

import mjasync
from mjasync import Request, Response
from mjasync.testing import MockTransport, VirtualClock, json_response, task_payload

ONE_TRY = mjasync.RetryPolicy(attempts=1)


def ids_of(request: Request) -> list[str]:
    path = urlsplit(request.url).path
    if path.endswith("/fetch"):
        return [path.split("/")[-2]]
    body = request.json if isinstance(request.json, dict) else {}
    return [str(i) for i in body.get("ids", [])]


def failing_when(
    proxy: FakeProxy, fails: Callable[[list[str]], bool]
) -> tuple[MockTransport, list[list[str]]]:
    """*proxy*, except that a status request whose ids *fails* answers HTTP 500."""
    failed: list[list[str]] = []

    def handle(request: Request) -> Response:
        ids = ids_of(request)
        if fails(ids):
            failed.append(ids)
            return json_response({"error": "boom"}, status=500)
        return proxy.handle(request)

    return MockTransport(handle), failed


async def outcomes(
    mj: mjasync.Client, clock: VirtualClock, ids: list[str], timeout: float
) -> dict[str, str]:
    waits = {i: asyncio.ensure_future(mj.await_task(i, timeout=timeout)) for i in ids}
    await clock.advance(timeout + 10)
    result = {}
    for task_id, wait in waits.items():
        try:
            result[task_id] = (await wait).status
        except mjasync.MJError as error:
            result[task_id] = type(error).__name__
    return result


async def wait_a_while(
    mj: mjasync.Client, clock: VirtualClock, ids: list[str], seconds: float
) -> None:
    """Await *ids* for *seconds* of virtual time, then give up on them."""
    waits = [asyncio.ensure_future(mj.await_task(i, timeout=None)) for i in ids]
    await clock.advance(seconds)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    start = 0
    most = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_failed_fetch_on_a_fetch_only_server_is_retried_not_fatal() -> None:
    """One HTTP 500 on one id's fetch backs the request off; every wait still finishes."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock, routes=("fetch",))
    for task_id in "12":
        proxy.set(task_id, "SUCCESS")
    once = [True]

    def fails(ids: list[str]) -> bool:
        if ids == ["1"] and once[0]:
            once[0] = False
            return True
        return False

    transport, failed = failing_when(proxy, fails)
    async with mjasync.Client(
        "http://mj.test", "k", transport=transport, clock=clock, retry=ONE_TRY
    ) as mj:
        assert await outcomes(mj, clock, ["1", "2"], timeout=60) == {
            "1": "SUCCESS",
            "2": "SUCCESS",
        }
    assert failed == [["1"]]


@pytest.mark.parametrize("batch_size", [2, 100])
async def test_an_id_that_fails_its_requests_does_not_starve_the_others(
    batch_size: int,
) -> None:
    """A batch that keeps failing is halved until the bad id is alone; the rest finish."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock, routes=("list-by-condition",))
    good = [str(n) for n in range(5)]
    for task_id in good:
        proxy.set(task_id, "SUCCESS")
    proxy.set("bad", "IN_PROGRESS", "")
    transport, failed = failing_when(proxy, lambda ids: "bad" in ids)
    policy = mjasync.PollPolicy(batch_size=batch_size)
    async with mjasync.Client(
        "http://mj.test", "k", poll=policy, transport=transport, clock=clock, retry=ONE_TRY
    ) as mj:
        result = await outcomes(mj, clock, ["bad", *good], timeout=120)
    assert result == {"bad": "TaskTimeoutError", **dict.fromkeys(good, "SUCCESS")}
    assert failed[-1] == ["bad"]  # alone in the end


async def test_a_server_that_fails_everything_costs_at_most_two_requests_per_batch() -> None:
    """Splitting needs a success elsewhere: an outage never turns a batch into 100 requests."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock, routes=("list-by-condition",))
    ids = [str(n) for n in range(100)]
    for task_id in ids:
        proxy.set(task_id, "IN_PROGRESS", "")
    transport, failed = failing_when(proxy, lambda _: True)
    async with mjasync.Client(
        "http://mj.test", "k", transport=transport, clock=clock, retry=ONE_TRY
    ) as mj:
        await wait_a_while(mj, clock, ids, 300)
    assert len(failed) > 10
    assert min(len(request) for request in failed) == 50


async def test_a_fetch_only_server_is_polled_within_the_request_ceiling() -> None:
    """Each per-id fetch takes its own token: no burst of a whole batch at one instant."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock, routes=("fetch",))
    ids = [str(n) for n in range(100)]
    for task_id in ids:
        proxy.set(task_id, "IN_PROGRESS", "")
    policy = mjasync.PollPolicy(max_requests_per_second=5)
    async with mjasync.Client(
        "http://mj.test", "k", poll=policy, transport=proxy.transport, clock=clock
    ) as mj:
        await wait_a_while(mj, clock, ids, 60)
    fetches = [when for when, route, _ in proxy.log if route == "fetch"]
    first = fetches[0]
    # The first poll finds that the list routes are missing and fetches that batch id by
    # id (bounded concurrency, once per client); from then on every fetch is metered.
    later = [when for when in fetches if when > first]
    assert len(later) > 100
    # 5 a second with a one-second burst: at most 5 + 5 in any second.
    assert busiest_second(later) <= 10


async def test_ids_a_batch_answer_left_out_are_fetched_within_the_ceiling() -> None:
    """A lagging relay leaves ids out; the one fetch each gets is metered like any poll."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock)
    ids = [str(n) for n in range(100)]
    for task_id in ids:
        proxy.set(task_id, "IN_PROGRESS", "")
        proxy.hidden.add(task_id)
    policy = mjasync.PollPolicy(max_requests_per_second=5)
    async with mjasync.Client(
        "http://mj.test", "k", poll=policy, transport=proxy.transport, clock=clock
    ) as mj:
        await wait_a_while(mj, clock, ids, 20)
    fetches = [when for when, route, _ in proxy.log if route == "fetch"]
    assert len(fetches) >= 50
    assert busiest_second([when for when, _, _ in proxy.log]) <= 10


async def test_virtual_time_waits_for_a_task_group_to_join() -> None:
    """`VirtualClock.advance` moves on only once woken tasks ran, joins included."""
    clock = VirtualClock()
    joined: list[float] = []

    async def child() -> None:
        return None

    async def parent() -> None:
        await clock.sleep(0.5)
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(child)
        joined.append(clock.now())

    task = asyncio.ensure_future(parent())
    await clock.advance(9.0)
    await task
    assert joined == [0.5]


@pytest.mark.parametrize("field", ["tick", "interval", "max_interval", "first_poll"])
def test_an_infinite_poll_gap_is_refused(field: str) -> None:
    """``inf`` passes a ``> 0`` check and would never poll again: a clear error instead."""
    with pytest.raises(ValueError, match=f"'{field}' must be a finite number"):
        mjasync.PollPolicy(**{field: math.inf})  # type: ignore[arg-type]


async def test_a_final_hint_is_confirmed_at_once_even_behind_a_slow_poll() -> None:
    """The confirming fetch does not wait for a poll a slow relay holds for 20 s."""
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS", "50%")

    async def handle(request: Request) -> Response:
        if urlsplit(request.url).path.endswith("list-by-condition") and clock.now() > 2:
            answer = proxy.handle(request)
            await clock.sleep(20.0)
            return answer
        return proxy.handle(request)

    async with mjasync.Client(
        "http://mj.test",
        "k",
        transport=MockTransport(handle),
        clock=clock,
        notify_hook="http://127.0.0.1:9/hook",
    ) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1", timeout=None))
        await clock.advance(3.0)  # a poll sent after 2 s is held until 20 s later
        proxy.set("1", "SUCCESS")
        hint = await mj.handle_notification(task_payload("1", "SUCCESS"), token=mj.notify_token)
        assert hint.woke
        hinted = clock.now()
        task = await clock.run(waiting)
        assert task.status == "SUCCESS"
        assert clock.now() - hinted < 1.0
        assert proxy.count("fetch") == 1
