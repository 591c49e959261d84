"""The simulator's job timing (issue #11): jitter of job lengths, uneven progress steps."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _shared import SIM_FAST as FAST
from aiohttp import web
from aiohttp.test_utils import TestServer

from mjasync.simulator import MIDJOURNEY_PROGRESS, Simulator, SimulatorConfig
from mjasync.simulator.__main__ import build_parser, config_from_args


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def submit(http: aiohttp.ClientSession, sim: Simulator, count: int, **body: str) -> list[str]:
    ids = []
    for i in range(count):
        async with http.post(
            sim.base_url + "/mj/submit/imagine", json={"prompt": f"fox {i}", **body}
        ) as resp:
            ids.append((await resp.json())["result"])
    return ids


async def timings(config: SimulatorConfig, count: int) -> list[tuple[float, ...]]:
    """The planned gaps of *count* tasks, in the order they were submitted."""
    async with aiohttp.ClientSession() as http, Simulator(config) as sim:
        ids = await submit(http, sim, count)
        return [sim.tasks[task_id].timing for task_id in ids]


async def test_defaults_plan_the_fixed_lifecycle() -> None:
    """Without jitter every job gets exactly the configured delays, as before."""
    config = SimulatorConfig(queue_delay=2.0, start_delay=3.0, step_delay=0.5, **FAST)
    plans = await timings(config, 3)
    # The queue, the start, then one gap per progress step (the last one ends the job).
    assert plans == [(2.0, 3.0, 0.5, 0.5, 0.5, 0.5)] * 3


async def test_duration_jitter_is_seeded_and_bounded() -> None:
    """Each job's total length varies within ±duration_jitter; the same seed repeats it."""
    config = SimulatorConfig(
        slots=40, queue_size=40, duration_jitter=0.3, step_jitter=0.5, seed=7, **FAST
    )
    nominal = config.queue_delay + config.start_delay + config.steps * config.step_delay
    first = await timings(config, 30)
    again = await timings(config, 30)
    other = await timings(dataclasses.replace(config, seed=8), 30)
    assert first == again
    assert first != other
    totals = [sum(plan) for plan in first]
    assert all(0.7 * nominal - 1e-9 <= t <= 1.3 * nominal + 1e-9 for t in totals)
    # Not all alike, and spread over most of the range (30 uniform draws).
    assert max(totals) - min(totals) > 0.3 * nominal
    for plan in first:
        factor = sum(plan) / nominal
        # step_jitter moves time between the gaps after SUBMITTED, never the total...
        render = config.start_delay + config.steps * config.step_delay
        assert math.isclose(sum(plan[1:]), render * factor)
        assert math.isclose(plan[0], config.queue_delay * factor)
        # ...and makes them uneven, each within its weight's bounds.
        steps = plan[2:]
        assert len(set(steps)) == len(steps)
        low, high = (0.5 / 1.5) * factor, (1.5 / 0.5) * factor
        assert all(low * config.step_delay <= s <= high * config.step_delay for s in steps)


async def test_jitter_leaves_ids_unchanged() -> None:
    """Timing draws from its own stream: the same seed gives the same ids with or without."""

    async def ids(config: SimulatorConfig) -> list[str]:
        async with aiohttp.ClientSession() as http, Simulator(config) as sim:
            found = await submit(http, sim, 3)
            return [sim.tasks[i].message_hash for i in found]

    # Nothing finishes meanwhile (a finished task draws its seed from the same stream).
    idle: dict[str, Any] = {"queue_delay": 1000.0, **FAST}
    plain = await ids(SimulatorConfig(seed=3, **idle))
    jittered = await ids(SimulatorConfig(seed=3, duration_jitter=0.2, step_jitter=0.2, **idle))
    assert plain == jittered


async def test_midjourney_progress_steps_follow_the_plan(http: aiohttp.ClientSession) -> None:
    """SUBMITTED 0%, IN_PROGRESS at each listed percentage, then SUCCESS 100%; finishTime
    comes no earlier than the planned gaps after startTime."""
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    config = SimulatorConfig(
        progress_percents=MIDJOURNEY_PROGRESS,
        duration_jitter=0.3,
        step_jitter=0.5,
        start_delay=4.0,
        step_delay=3.0,
        time_scale=0.005,
    )
    try:
        async with Simulator(config) as sim:
            ids = await submit(http, sim, 3, notifyHook=str(server.make_url("/hook")))
            for _ in range(2000):
                if all(sim.tasks[i].status == "SUCCESS" for i in ids):
                    break
                await asyncio.sleep(0.001)
            for _ in range(2000):
                if sum(r["status"] == "SUCCESS" for r in received) == 3:
                    break
                await asyncio.sleep(0.001)
            for task_id in ids:
                task = sim.tasks[task_id]
                assert task.status == "SUCCESS"
                assert task.start_time is not None
                assert task.finish_time is not None
                planned_ms = sum(task.timing[1:]) * config.time_scale * 1000
                # Both times are truncated milliseconds, and the engine runs a transition
                # up to 1 ms before its due time (8 transitions after SUBMITTED).
                assert task.finish_time - task.start_time >= planned_ms - 10
                mine = [r for r in received if r["id"] == task_id]
                # startTime is set when the job is sent (SUBMITTED), finishTime at the end.
                submitted = next(r for r in mine if r["status"] == "SUBMITTED")
                assert submitted["startTime"] == task.start_time
                assert submitted["finishTime"] is None
                seen = [(r["status"], r["progress"]) for r in mine]
                # No preview before the first real step, one at each step after it.
                previews = {
                    str(r["progress"]): r["imageUrl"] for r in mine if r["status"] == "IN_PROGRESS"
                }
                assert previews.pop("0%") is None
                assert len(previews) == len(MIDJOURNEY_PROGRESS) - 1
                for pct, url in previews.items():
                    assert str(url).endswith(f"-preview-{pct[:-1]}.png")
                assert sorted(seen, key=_rank) == [
                    ("SUBMITTED", "0%"),
                    *(("IN_PROGRESS", f"{p}%") for p in MIDJOURNEY_PROGRESS),
                    ("SUCCESS", "100%"),
                ]
    finally:
        await server.close()


def _rank(item: tuple[object, object]) -> tuple[int, int]:
    status, progress = item
    order = {"SUBMITTED": 0, "IN_PROGRESS": 1, "SUCCESS": 2}
    return order[str(status)], int(str(progress).rstrip("%"))


def test_timing_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="duration_jitter"):
        SimulatorConfig(duration_jitter=1.0)
    with pytest.raises(ValueError, match="step_jitter"):
        SimulatorConfig(step_jitter=-0.1)
    with pytest.raises(ValueError, match="increase"):
        SimulatorConfig(progress_percents=(15, 15, 31))
    with pytest.raises(ValueError, match=r"0\.\.99"):
        SimulatorConfig(progress_percents=(50, 100))
    with pytest.raises(ValueError, match="step_delay"):
        SimulatorConfig(step_delay=-1.0)
    config = SimulatorConfig(progress_percents=[10, 20])  # type: ignore[arg-type]
    assert config.progress_percents == (10, 20)
    assert config.steps == 2


def test_timing_flags() -> None:
    args = build_parser().parse_args(
        [
            "--queue-delay",
            "0.5",
            "--start-delay",
            "4",
            "--step-delay",
            "3.5",
            "--progress-percents",
            "midjourney",
            "--duration-jitter",
            "0.3",
            "--step-jitter",
            "0.5",
        ]
    )
    config = config_from_args(args)
    assert (config.queue_delay, config.start_delay, config.step_delay) == (0.5, 4.0, 3.5)
    assert config.progress_percents == MIDJOURNEY_PROGRESS
    assert (config.duration_jitter, config.step_jitter) == (0.3, 0.5)
    assert config_from_args(build_parser().parse_args([])) == SimulatorConfig()
    parsed = build_parser().parse_args(["--progress-percents", "10,40,70"])
    assert parsed.progress_percents == (10, 40, 70)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--progress-percents", "ten"])
    # A value the config refuses is a clean error of the command, not a traceback.
    with pytest.raises(ValueError, match="duration_jitter"):
        config_from_args(build_parser().parse_args(["--duration-jitter", "2"]))
