"""The client's admission gate: queue-full and 429 answers pause every submit (#8)."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from _shared import FAST_POLL

import mjasync
from mjasync import (
    Client,
    QueueFullError,
    RateLimitError,
    Request,
    Response,
    RetryPolicy,
    SubmitGate,
)
from mjasync.simulator import Simulator
from mjasync.testing import MockTransport, json_response, submit_payload

QUICK = RetryPolicy(attempts=3, backoff=0.005, max_backoff=0.04)
FULL = {"code": 23, "description": "队列已满，请稍后尝试", "properties": {}}


async def test_fifty_chains_through_a_busy_proxy_all_finish() -> None:
    """50 imagine -> U1 chains at limit=10 against 2 slots + 2 queued: all finish, none twice.

    Before the gate, a few quick retries per submit gave up while the server still had
    the chain's grid: chains failed with QueueFullError.
    """
    async with (
        Simulator(
            dialect="plus",
            time_scale=0.002,
            slots=2,
            queue_size=2,
            queue_delay=0.5,
            start_delay=0.5,
            progress_steps=2,
            step_delay=0.5,
        ) as sim,
        Client(sim.base_url, poll=FAST_POLL, retry=QUICK, queue_full_wait=30) as mj,
    ):

        async def chain(i: int) -> mjasync.Task:
            grid = await mj.await_task(await mj.imagine(f"a hare {i}"), timeout=30)
            return await mj.run_action(grid, "U1", timeout=30)

        outcomes = await mjasync.gather_chains((chain(i) for i in range(50)), limit=10)
        refusals = mj.submit_gate.refusals

    assert [type(outcome) for outcome in outcomes] == [mjasync.Task] * 50
    assert refusals > 0  # the server really was full
    assert len(sim.tasks) == 100  # 50 grids + 50 upscales: nothing created twice
    upscales = [outcome.id for outcome in outcomes if isinstance(outcome, mjasync.Task)]
    assert len(set(upscales)) == 50
    assert sim.requests["POST /mj/submit/imagine"] + sim.requests["POST /mj/submit/action"] == (
        100 + refusals
    )


def counting(answers: list[Response]) -> tuple[MockTransport, list[float]]:
    """A transport answering *answers* in order, then accepting; and its send times."""
    times: list[float] = []
    queue = list(answers)

    def handler(request: Request) -> Response:
        times.append(anyio.current_time())
        if queue:
            return queue.pop(0)
        return json_response(submit_payload(str(1700000000000000 + len(times))))

    return MockTransport(handler), times


def client(transport: MockTransport, **kwargs: Any) -> Client:
    kwargs.setdefault("retry", QUICK)
    return Client("http://mj.test", "k", transport=transport, **kwargs)


async def test_a_full_queue_is_waited_through_and_sent_again() -> None:
    """Three refusals, then acceptance: one Submission, four requests, no error."""
    transport, _ = counting([json_response(FULL)] * 3)
    async with client(transport) as mj:
        submission = await mj.imagine("a cat")

    assert submission.code == 1
    assert len(transport.requests) == 4
    assert mj.submit_gate.refusals == 3


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(json_response(FULL), id="novicezk-23"),
        pytest.param(
            json_response({"code": 9, "description": "提交失败，队列已满，请稍后重试"}),
            id="trueai-9",
        ),
        pytest.param(
            json_response({"code": 4, "description": "并发数已达上限"}), id="trueai-user-cap"
        ),
        pytest.param(
            json_response({"success": False, "code": -1, "message": "队列数已达上限"}),
            id="trueai-fail",
        ),
        pytest.param(Response(403), id="trueai-ip-limiter"),
        pytest.param(json_response({"code": 30, "description": "rate limited"}), id="newapi-30"),
    ],
)
async def test_every_servers_not_now_is_waited_through(refusal: Response) -> None:
    """Each dialect's way of saying "not now" pauses and resends; nothing else does."""
    transport, _ = counting([refusal])
    async with client(transport) as mj:
        submission = await mj.imagine("a cat")

    assert submission.code == 1
    assert len(transport.requests) == 2
    assert mj.submit_gate.refusals == 1


async def test_retry_after_is_honoured_by_the_gate() -> None:
    """A 429 with Retry-After 0.1 holds the next try back at least that long."""
    transport, times = counting([Response(429, {"retry-after": "0.1"})])
    async with client(transport) as mj:
        await mj.imagine("a cat")

    assert times[1] - times[0] >= 0.1


async def test_one_refusal_pauses_the_other_submits_too() -> None:
    """While the gate is shut, another submit waits instead of hitting the full queue."""
    transport, times = counting([Response(429, {"retry-after": "0.15"})])
    async with client(transport) as mj:

        async def second() -> None:
            await anyio.sleep(0.03)  # after the first refusal, inside its pause
            await mj.imagine("second")

        async with anyio.create_task_group() as group:
            group.start_soon(mj.imagine, "first")
            group.start_soon(second)

    bodies = [request.json["prompt"] for request in transport.requests]
    assert bodies[0] == "first"
    assert sorted(bodies[1:]) == ["first", "second"]  # "second" was never sent early
    assert min(times[1:]) - times[0] >= 0.15


async def test_queue_full_wait_bounds_the_wait_and_says_so() -> None:
    """A queue that never frees raises QueueFullError after queue_full_wait, with a note."""
    transport, _ = counting([json_response(FULL)] * 1000)
    async with client(transport, queue_full_wait=0.2) as mj:
        start = anyio.current_time()
        with pytest.raises(QueueFullError) as info:
            await mj.imagine("a cat")
        elapsed = anyio.current_time() - start

    assert 0.2 <= elapsed < 0.6
    assert "nothing was created" in "".join(info.value.__notes__)


async def test_a_retry_after_beyond_the_wait_raises_at_once() -> None:
    """A Retry-After longer than what is left of queue_full_wait is not waited for."""
    transport, _ = counting([Response(429, {"retry-after": "30"})])
    async with client(transport, queue_full_wait=5) as mj:
        with pytest.raises(RateLimitError) as info:
            await mj.imagine("a cat")

    assert info.value.retry_after == 30
    assert len(transport.requests) == 1


async def test_queries_are_not_gated() -> None:
    """A paused gate holds submits back, never fetches."""
    transport = MockTransport(lambda r: json_response({"id": "1", "status": "SUCCESS"}))
    async with client(transport) as mj:
        mj.submit_gate.push_back(retry_after=5.0)
        with anyio.fail_after(1):
            task = await mj.fetch("1")

    assert task.id == "1"


async def test_the_shared_gate_serves_a_custom_retry_loop() -> None:
    """What the bulk runner does: queue_full_wait=0 raises, and the gate paces its loop."""
    transport, times = counting([json_response(FULL), Response(429)])
    async with client(transport, queue_full_wait=0) as mj:
        gate = mj.submit_gate
        for _ in range(5):
            await gate.wait()
            try:
                await mj.imagine("a cat")
            except (QueueFullError, RateLimitError) as refused:
                retry_after = refused.retry_after if isinstance(refused, RateLimitError) else None
                gate.push_back(retry_after)
                continue
            gate.ok()
            break

    assert len(times) == 3
    assert gate.refusals == 2
    assert times[2] - times[1] > 0


async def test_gate_pauses_grow_per_round_and_reset_on_success() -> None:
    """Each round of refusals doubles the pause (with jitter); ok() starts over."""
    gate = SubmitGate(base=0.01, cap=0.08, rng=random.Random(1))
    pauses = []
    for _ in range(5):
        await gate.wait()
        pauses.append(gate.push_back())
        assert gate.push_back() <= pauses[-1]  # same round: not longer
    gate.ok()
    await gate.wait()
    after_ok = gate.push_back()

    ceilings = [0.01, 0.02, 0.04, 0.08, 0.08]
    assert all(c / 2 <= p <= c for p, c in zip(pauses, ceilings, strict=True))
    assert after_ok <= 0.01
    assert gate.refusals == 11


async def test_gate_wait_respects_its_limit() -> None:
    """wait(limit=) returns after the limit even when the pause is longer."""
    gate = SubmitGate(base=10.0, cap=10.0)
    gate.push_back()
    with anyio.fail_after(1):
        slept = await gate.wait(limit=0.05)

    assert 0.05 <= slept < 0.5
    assert gate.paused_for > 4  # the pause (5 to 10 s) goes on


def test_queue_full_wait_must_not_be_negative() -> None:
    """A negative queue_full_wait is refused at construction."""
    with pytest.raises(mjasync.InvalidRequestError, match="queue_full_wait"):
        Client("http://mj.test", "k", queue_full_wait=-1)


async def test_bypass_raises_at_once_and_still_pauses_the_others() -> None:
    """Inside bypass() a refusal is raised after one request; other submits still pause."""
    transport, times = counting([json_response(FULL), Response(429, {"retry-after": "0.1"})])
    async with client(transport) as mj:
        gate = mj.submit_gate
        with gate.bypass():
            assert gate.bypassed
            with pytest.raises(QueueFullError):
                await mj.imagine("paced by the caller")
            with pytest.raises(RateLimitError):
                await mj.imagine("paced by the caller")
        assert not gate.bypassed
        await mj.imagine("an ordinary submit")

    assert len(times) == 3  # no quick retries inside bypass, despite attempts=3
    assert times[2] - times[1] >= 0.1  # the ordinary submit honoured the pause
    assert gate.refusals == 2
