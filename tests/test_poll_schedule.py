"""The client-paced schedule (#11): shared ticks, and a tick-pace window around each
running task's estimated finish.

Everything runs on a `VirtualClock` against `FakeProxy`, whose tasks change exactly when
a test says: a progress step at 3.0 s is seen by the first poll after 3.0 s.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
from _fakeproxy import FakeProxy
from hypothesis import given, settings
from hypothesis import strategies as st

import mjasync
from mjasync.testing import VirtualClock, task_payload

DEFAULT = mjasync.PollPolicy()
# Server epoch milliseconds at virtual time 0: FakeProxy's tasks stamp their times on it.
EPOCH_MS = 1_748_339_000_000


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def client_for(
    proxy: FakeProxy, clock: VirtualClock, poll: mjasync.PollPolicy = DEFAULT
) -> mjasync.Client:
    return mjasync.Client(
        "http://mj.test", "key", poll=poll, transport=proxy.transport, clock=clock
    )


def polls_of(proxy: FakeProxy, task_id: str) -> list[float]:
    """When each status request naming *task_id* was sent."""
    return [t for t, _, ids in proxy.log if task_id in ids]


class Timeline:
    """One task's life on the virtual clock: ``(time, status, progress)`` steps, applied
    to the FakeProxy by a background task as the clock reaches each step."""

    def __init__(
        self,
        proxy: FakeProxy,
        clock: VirtualClock,
        task_id: str,
        steps: list[tuple[float, str, str | None]],
        *,
        start: float = 0.0,
        action: str = "IMAGINE",
    ) -> None:
        self.proxy = proxy
        self.clock = clock
        self.task_id = task_id
        self.steps = steps
        self.start = start
        self.action = action
        self.finished_at = math.inf

    def set(self, status: str, progress: str | None) -> None:
        extra: dict[str, Any] = {"startTime": EPOCH_MS + int(self.start * 1000)}
        if status == "SUCCESS":
            extra["finishTime"] = EPOCH_MS + int(self.clock.now() * 1000)
            self.finished_at = self.clock.now()
        self.proxy.tasks[self.task_id] = task_payload(
            self.task_id, status, progress=progress, action=self.action, **extra
        )

    async def play(self) -> None:
        for when, status, progress in self.steps:
            await self.clock.sleep(when - self.clock.now())
            self.set(status, progress)


async def wait_and_time(
    mj: mjasync.Client, clock: VirtualClock, timeline: Timeline
) -> tuple[mjasync.Task, float]:
    """Await the task while its timeline plays; the task and when the wait returned."""
    timeline.set(*timeline.steps[0][1:])
    player = asyncio.ensure_future(timeline.play())
    try:
        task = await clock.run(mj.await_task(timeline.task_id, timeout=None))
    finally:
        player.cancel()
    return task, clock.now()


def running(
    *times_and_percents: tuple[float, int], done: float
) -> list[tuple[float, str, str | None]]:
    """A running task's steps: ``IN_PROGRESS`` at each percentage, then SUCCESS at *done*."""
    steps: list[tuple[float, str, str | None]] = [
        (at, "IN_PROGRESS", f"{percent}%") for at, percent in times_and_percents
    ]
    return [*steps, (done, "SUCCESS", None)]


# Progress every 2.5 s from 0 %: the pace says 100 % at 25 s.
PACED = ((0.0, 0), (2.5, 10), (5.0, 20), (7.5, 30))


async def test_a_task_finishing_at_its_estimate_is_seen_within_a_tick(clock: VirtualClock) -> None:
    """Its progress pace puts the finish at 25 s: polls come every tick from just before."""
    proxy = FakeProxy(clock=clock)
    timeline = Timeline(proxy, clock, "1", running(*PACED, done=25.2))
    async with client_for(proxy, clock) as mj:
        task, seen_at = await wait_and_time(mj, clock, timeline)
    assert task.status == "SUCCESS"
    assert 0 <= seen_at - timeline.finished_at <= DEFAULT.tick
    gaps = [b - a for a, b in itertools.pairwise(polls_of(proxy, "1"))]
    assert max(gaps) == pytest.approx(DEFAULT.interval)  # far from the finish: the interval
    assert min(gaps) == pytest.approx(DEFAULT.tick)  # near it: every tick


@pytest.mark.parametrize("late", [0.7, 2.9])
async def test_a_later_finish_than_estimated_is_still_seen_within_a_tick(
    late: float, clock: VirtualClock
) -> None:
    """Estimated at 25 s, finishing at 25 s + late: the tick pace holds past the estimate,
    so the result is one tick late at most, never an interval."""
    proxy = FakeProxy(clock=clock)
    timeline = Timeline(proxy, clock, "1", running(*PACED, done=25.0 + late))
    async with client_for(proxy, clock) as mj:
        _, seen_at = await wait_and_time(mj, clock, timeline)
    assert 0 <= seen_at - timeline.finished_at <= DEFAULT.tick


async def test_an_estimate_that_is_wrong_costs_polls_never_the_interval_guarantee(
    clock: VirtualClock,
) -> None:
    """A task that stalls at 30 % long past its estimate: a bounded while at the tick
    pace, then back to the interval, and its finish is still seen within one interval."""
    proxy = FakeProxy(clock=clock)
    timeline = Timeline(proxy, clock, "1", running(*PACED, done=81.3))
    async with client_for(proxy, clock) as mj:
        _, seen_at = await wait_and_time(mj, clock, timeline)
    assert 0 <= seen_at - timeline.finished_at <= DEFAULT.interval
    polls = polls_of(proxy, "1")
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert max(gaps) <= DEFAULT.interval + 1e-9
    fast = [a for a, b in itertools.pairwise(polls) if b - a < DEFAULT.interval - 1e-9]
    assert fast  # the estimate was acted on...
    assert max(fast) < 50  # ...and given up once it was long past
    plain = math.ceil(81.3 / DEFAULT.interval) + 1
    assert len(polls) <= plain + len(fast)


async def test_an_early_finish_is_seen_on_the_interval_pace(clock: VirtualClock) -> None:
    """Finishing long before the estimate: an estimate never delays a poll past interval."""
    proxy = FakeProxy(clock=clock)
    timeline = Timeline(proxy, clock, "1", running(*PACED, done=11.1))
    async with client_for(proxy, clock) as mj:
        _, seen_at = await wait_and_time(mj, clock, timeline)
    assert 0 <= seen_at - timeline.finished_at <= DEFAULT.interval


async def test_without_predict_running_tasks_keep_the_interval(clock: VirtualClock) -> None:
    """PollPolicy(predict=False): the same task is polled every interval to the end."""
    proxy = FakeProxy(clock=clock)
    timeline = Timeline(proxy, clock, "1", running(*PACED, done=25.2))
    policy = mjasync.PollPolicy(predict=False)
    async with client_for(proxy, clock, policy) as mj:
        _, seen_at = await wait_and_time(mj, clock, timeline)
    gaps = [b - a for a, b in itertools.pairwise(polls_of(proxy, "1"))]
    assert gaps == pytest.approx([DEFAULT.interval] * len(gaps))
    assert seen_at - timeline.finished_at > DEFAULT.tick  # what the estimate bought


async def test_the_history_of_an_action_predicts_a_task_without_progress(
    clock: VirtualClock,
) -> None:
    """No progress numbers at all: a finished IMAGINE that ran 30 s puts the next
    IMAGINE's finish at its startTime + 30 s, and the tick pace catches it there."""
    proxy = FakeProxy(clock=clock)
    first = Timeline(proxy, clock, "1", [(0.0, "IN_PROGRESS", ""), (30.2, "SUCCESS", None)])
    second = Timeline(
        proxy, clock, "2", [(40.0, "IN_PROGRESS", ""), (71.2, "SUCCESS", None)], start=40.0
    )
    async with client_for(proxy, clock) as mj:
        await wait_and_time(mj, clock, first)
        await clock.advance(40.0 - clock.now())
        _, seen_at = await wait_and_time(mj, clock, second)
        assert 0 <= seen_at - second.finished_at <= DEFAULT.tick
        # Another action has no history: the interval pace.
        third = Timeline(
            proxy,
            clock,
            "3",
            [(80.0, "IN_PROGRESS", ""), (111.2, "SUCCESS", None)],
            start=80.0,
            action="UPSCALE",
        )
        await clock.advance(80.0 - clock.now())
        _, seen_at = await wait_and_time(mj, clock, third)
        assert seen_at - third.finished_at > DEFAULT.tick


async def test_ids_share_ticks_whenever_they_were_registered(clock: VirtualClock) -> None:
    """Three waits begun 0.3 s and 1.1 s apart: from the second tick on, every request
    asks about all three (per-id due times would keep them apart)."""
    proxy = FakeProxy(clock=clock)
    for i in "123":
        proxy.set(i, "IN_PROGRESS", "")
    async with client_for(proxy, clock) as mj:
        waits = [asyncio.ensure_future(mj.await_task("1"))]
        await clock.advance(0.3)
        waits.append(asyncio.ensure_future(mj.await_task("2")))
        await clock.advance(0.8)
        waits.append(asyncio.ensure_future(mj.await_task("3")))
        await clock.advance(20)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    after_registration = [ids for t, _, ids in proxy.log if t > 1.1]
    assert len(after_registration) >= 8
    assert all(sorted(ids) == ["1", "2", "3"] for ids in after_registration[1:])


async def test_a_tick_fills_its_last_request_with_the_ids_due_soonest(
    clock: VirtualClock,
) -> None:
    """40 running tasks are due every 2 s, 110 queued ones after 2 s, then 3 s: the tick
    at 4.5 s asks about the 40 and fills the request with 60 of the queued ones."""
    proxy = FakeProxy(clock=clock)
    for i in range(40):
        proxy.set(str(i), "IN_PROGRESS", "")
    for i in range(40, 150):
        proxy.set(str(i), "SUBMITTED")
    async with client_for(proxy, clock) as mj:
        waits = [asyncio.ensure_future(mj.await_task(str(i))) for i in range(150)]
        await clock.advance(4.6)
        ticks = [(t, ids) for t, _, ids in proxy.log]
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    sizes = [(t, len(ids)) for t, ids in ticks]
    assert sizes == [(0.5, 100), (0.5, 50), (2.5, 100), (2.5, 50), (4.5, 100)]
    assert set(map(str, range(40))) <= set(ticks[-1][1])


async def test_ticks_near_completion_stay_within_the_request_budget() -> None:
    """250 tasks at their finish (100 %): 3 requests a tick and a tick every 0.5 s; a
    lower max_requests_per_second stretches the ticks to it."""
    for ceiling, expected in ((20.0, 6.0), (2.0, 2.0)):
        clock = VirtualClock()
        proxy = FakeProxy(clock=clock)
        for i in range(250):
            proxy.set(str(i), "IN_PROGRESS", "100%")
        policy = mjasync.PollPolicy(max_requests_per_second=ceiling)
        async with client_for(proxy, clock, policy) as mj:
            waits = [asyncio.ensure_future(mj.await_task(str(i))) for i in range(250)]
            # The first tick, and the ceiling's one-second burst, go by first.
            await clock.advance(1.6)
            mark = len(proxy.log)
            await clock.advance(3.0)
            rate = (len(proxy.log) - mark) / 3.0
            assert {len(ids) for _, _, ids in proxy.log[mark:]} <= {100, 50}
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        assert expected - 0.7 <= rate <= expected + 0.4, (ceiling, rate)


async def test_a_budget_with_room_speeds_the_ticks_up_to_twice(clock: VirtualClock) -> None:
    """1,000 waits (a budget of 10 requests a tick), 100 of them near their finish (one
    request): the near ones are asked about every quarter second, not every half."""
    proxy = FakeProxy(clock=clock)
    for i in range(100):
        proxy.set(str(i), "IN_PROGRESS", "100%")
    for i in range(100, 1000):
        proxy.set(str(i), "SUBMITTED")
    async with client_for(proxy, clock) as mj:
        waits = [asyncio.ensure_future(mj.await_task(str(i))) for i in range(1000)]
        await clock.advance(3.0)
        polls = polls_of(proxy, "0")
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(polls) if a > 1.0]
    assert gaps
    assert max(gaps) == pytest.approx(DEFAULT.tick / 2)


async def test_webhooks_keep_the_safety_net_over_the_tick_pace(clock: VirtualClock) -> None:
    """Once notifications arrive, even a task at its estimated finish is polled at the
    webhook_interval only: callbacks wake the waiters."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS", "100%")
    async with mjasync.Client(
        "http://mj.test",
        "key",
        transport=proxy.transport,
        clock=clock,
        notify_hook="http://127.0.0.1:9/hook",
    ) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(1.0)
        body = task_payload("1", "IN_PROGRESS", progress="100%")
        assert (await mj.handle_notification(body, token=mj.notify_token)).woke
        await clock.advance(2.0)
        mark = len(proxy.log)
        await clock.advance(60.0)
        polls = [t for t, _, _ in proxy.log[mark:]]
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps
    assert min(gaps) >= DEFAULT.webhook_interval - 1e-9


async def test_a_status_change_restarts_the_queued_growth(clock: VirtualClock) -> None:
    """NOT_START, grown to long gaps, then SUBMITTED: the gap starts again from interval."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "NOT_START", "")
    policy = mjasync.PollPolicy(first_poll=0.0, predict=False)
    async with client_for(proxy, clock, policy) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(40)
        proxy.set("1", "SUBMITTED", "0%")
        mark = len(proxy.log)
        await clock.advance(12)
        after = [t for t, _, _ in proxy.log[mark - 1 :]]
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert gaps[:3] == pytest.approx([policy.max_interval, policy.interval, 3.0])


# -- properties --------------------------------------------------------------------------


def timelines() -> st.SearchStrategy[tuple[list[tuple[float, int]], float]]:
    """A running task: increasing percentages at increasing times, then a finish."""

    @st.composite
    def build(
        draw: Callable[[st.SearchStrategy[Any]], Any],
    ) -> tuple[list[tuple[float, int]], float]:
        count = draw(st.integers(min_value=0, max_value=7))
        gaps = draw(st.lists(st.floats(0.2, 8.0), min_size=count, max_size=count))
        percents = sorted(draw(st.sets(st.integers(0, 99), min_size=count, max_size=count)))
        times = list(itertools.accumulate(gaps, initial=0.3))[1:]
        done = (times[-1] if times else 0.3) + draw(st.floats(0.05, 20.0))
        return list(zip(times, percents, strict=True)), done

    return build()


@settings(max_examples=60, deadline=None)
@given(case=timelines())
async def test_property_estimates_never_cost_the_interval_guarantee(
    case: tuple[list[tuple[float, int]], float],
) -> None:
    """Any progress timeline, any finish: polls of a running task are never more than an
    interval apart, and its finish is seen within one interval (an estimate only ever
    brings polls earlier)."""
    steps, done = case
    clock = VirtualClock()
    proxy = FakeProxy(clock=clock)
    plan = [(0.0, "IN_PROGRESS", "")]
    plan += [(at, "IN_PROGRESS", f"{percent}%") for at, percent in steps]
    timeline = Timeline(proxy, clock, "1", [*plan, (done, "SUCCESS", None)])
    async with client_for(proxy, clock) as mj:
        _, seen_at = await wait_and_time(mj, clock, timeline)
    assert 0 <= seen_at - timeline.finished_at <= DEFAULT.interval + 1e-9
    polls = polls_of(proxy, "1")
    assert all(b - a <= DEFAULT.interval + 1e-9 for a, b in itertools.pairwise(polls))
    assert polls[0] <= DEFAULT.first_poll
