"""The simulator's soak faults (latency spikes, spoiled images), their counts and the
debug routes a harness in another process reads (/sim/faults, /sim/tasks, /sim/requests).

Driven over HTTP with a raw aiohttp session, like tests/test_simulator.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _shared import SIM_FAST as FAST
from _shared import sim_reaches as _until

from mjasync.simulator import Faults, Simulator, SimulatorConfig

PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


async def _imagine(http: aiohttp.ClientSession, sim: Simulator, **body: Any) -> str:
    async with http.post(
        sim.base_url + "/mj/submit/imagine", json={"prompt": "a fox", **body}
    ) as response:
        answer = await response.json()
    assert answer["code"] in (1, 22), answer
    return str(answer["result"])


async def _finished_image(http: aiohttp.ClientSession, sim: Simulator) -> str:
    task_id = await _imagine(http, sim)
    await _until(sim, task_id, {"SUCCESS"})
    return f"{sim.base_url}/sim/images/{task_id}.png"


async def test_latency_spike_answers_late_after_the_work_is_done(
    http: aiohttp.ClientSession,
) -> None:
    """A spiked submit creates its task at once; only its answer waits (real seconds)."""
    async with Simulator(dialect="plus", **FAST) as sim:
        sim.inject("imagine", "latency_spike", seconds=0.15)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with http.post(
                sim.base_url + "/mj/submit/imagine",
                json={"prompt": "late", "state": "s-late"},
                timeout=aiohttp.ClientTimeout(total=0.05),
            ) as response:
                await response.read()
        # The client gave up, yet the server already holds the task.
        assert [t.state for t in sim.tasks.values()] == ["s-late"]
        await asyncio.sleep(0.12)
        assert sim.fault_counts == {"latency_spike": 1}
        assert loop.time() - started >= 0.15

    # Probabilistic: Faults.spike_seconds, not scaled by time_scale.
    faults = Faults(latency_spike=1.0, spike_seconds=0.05)
    async with Simulator(dialect="plus", faults=faults, time_scale=0.0001) as sim:
        started = loop.time()
        async with http.get(f"{sim.base_url}/mj/task/1/fetch") as response:
            await response.read()
        assert loop.time() - started >= 0.045
        assert sim.fault_counts["latency_spike"] == 1


async def test_image_faults_spoil_only_image_answers(http: aiohttp.ClientSession) -> None:
    """image_cut drops mid-body, image_truncated sends half a PNG, image_wrong_type lies."""
    async with Simulator(dialect="plus", **FAST) as sim:
        url = await _finished_image(http, sim)
        async with http.get(url) as response:
            whole = await response.read()
        assert whole.endswith(PNG_END)

        sim.inject("images", "image_cut")
        async with http.get(url) as response:
            assert response.headers["Content-Length"] == str(len(whole))
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()

        sim.inject("images", "image_truncated")
        async with http.get(url) as response:
            assert response.status == 200
            assert response.content_type == "image/png"
            assert await response.read() == whole[: len(whole) // 2]

        sim.inject("images", "image_wrong_type")
        async with http.get(url) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert b"<html>" in await response.read()

        sim.inject("images", "image_wrong_type", variant="jpeg")
        async with http.get(url) as response:
            assert response.content_type == "image/jpeg"
            assert await response.read() == whole

        # A missing image stays a plain 404: nothing to spoil, nothing counted.
        sim.inject("images", "image_truncated")
        async with http.get(f"{sim.base_url}/sim/images/1.png") as response:
            assert response.status == 404
        assert sim.fault_counts == {"image_cut": 1, "image_truncated": 1, "image_wrong_type": 2}

        with pytest.raises(ValueError, match="variant"):
            sim.inject("images", "image_wrong_type", variant="gif")


async def test_probabilistic_image_faults_reach_image_routes_only(
    http: aiohttp.ClientSession,
) -> None:
    """Image faults need no routes=; API answers never get them; the same seed repeats."""

    async def run(seed: int) -> list[str]:
        faults = Faults(image_cut=0.3, image_truncated=0.3, image_wrong_type=0.3)
        config = SimulatorConfig(dialect="plus", seed=seed, faults=faults, time_scale=0.001)
        async with Simulator(config) as sim:
            url = await _finished_image(http, sim)
            task_id = url.rsplit("/", 1)[-1].removesuffix(".png")
            async with http.get(f"{sim.base_url}/mj/task/{task_id}/fetch") as response:
                assert (await response.json())["status"] == "SUCCESS"
            seen = []
            for _ in range(30):
                try:
                    async with http.get(url) as response:
                        body = await response.read()
                        seen.append(f"{response.content_type}:{len(body)}")
                except aiohttp.ClientPayloadError:
                    seen.append("cut")
            whole = max(int(s.split(":")[1]) for s in seen if s.startswith("image/png"))
            # Task ids (and so the PNGs) differ from run to run; what happened does not.
            seen = ["whole" if s == f"image/png:{whole}" else s.split(":")[0] for s in seen]
            assert sum(sim.fault_counts.values()) == len([s for s in seen if s != "whole"])
            return seen

    first = await run(3)
    assert first == await run(3)
    assert {"cut", "whole", "image/png", "image/jpeg", "text/html"} <= set(first)

    # routes= set and not naming the image route: no image faults there.
    faults = Faults(image_truncated=1.0, routes=frozenset({"fetch"}))
    async with Simulator(dialect="plus", faults=faults, **FAST) as sim:
        url = await _finished_image(http, sim)
        async with http.get(url) as response:
            assert (await response.read()).endswith(PNG_END)
        assert sim.fault_counts == {}


async def test_fault_counts_name_the_kind_that_played(http: aiohttp.ClientSession) -> None:
    """submit_fault_* count as themselves, task faults once a task carries them."""
    async with Simulator(dialect="plus", **FAST) as sim:
        sim.inject("imagine", "submit_fault_after")
        async with http.post(sim.base_url + "/mj/submit/imagine", json={"prompt": "a"}) as r:
            assert r.status == 500
        sim.inject("imagine", "submit_fault_before", drop=True)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.post(sim.base_url + "/mj/submit/imagine", json={"prompt": "b"}):
                pass
        sim.inject("fetch", "server_error")
        async with http.get(f"{sim.base_url}/mj/task/1/fetch") as r:
            assert r.status == 500
        sim.inject("imagine", "task_failure")
        sim.inject("imagine", "stuck")
        await _imagine(http, sim)
        sim.inject("fetch", "latency", real_seconds=0.001)
        async with http.get(f"{sim.base_url}/mj/task/1/fetch") as r:
            await r.read()
        expected = {
            "submit_fault_after": 1,
            "submit_fault_before": 1,
            "server_error": 1,
            "task_failure": 1,
            "stuck": 1,
            "latency": 1,
        }
        assert sim.fault_counts == expected
        assert await _json(http, sim.base_url + "/sim/faults") == expected
        sim.reset_counters()
        assert await _json(http, sim.base_url + "/sim/faults") == {}

    # The every-request latency range is not a fault event.
    async with Simulator(dialect="plus", faults=Faults(latency=(1.0, 1.0)), **FAST) as sim:
        async with http.get(f"{sim.base_url}/mj/task/1/fetch") as r:
            await r.read()
        assert sim.fault_counts == {}


async def test_notify_fault_counts(http: aiohttp.ClientSession) -> None:
    """A dropped delivery counts as a drop only; duplicates and reorders as what they did."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("/hook"))
    try:
        faults = Faults(notify_drop=1.0, notify_duplicate=1.0, notify_reorder=1.0)
        async with Simulator(dialect="plus", progress_steps=1, faults=faults, **FAST) as sim:
            task_id = await _imagine(http, sim, notifyHook=url)
            await _until(sim, task_id, {"SUCCESS"})
            assert sim.fault_counts == {"notify_drop": 3}
        faults = Faults(notify_duplicate=1.0, notify_reorder=1.0)
        async with Simulator(
            dialect="plus", progress_steps=1, step_delay=0.01, faults=faults, **FAST
        ) as sim:
            task_id = await _imagine(http, sim, notifyHook=url)
            await _until(sim, task_id, {"SUCCESS"})
            assert sim.fault_counts == {"notify_duplicate": 3, "notify_reorder": 3}
    finally:
        await server.close()


async def test_debug_routes_list_tasks_and_requests(http: aiohttp.ClientSession) -> None:
    """/sim/tasks shows state, parent, customId and index; /sim/requests each request's faults."""
    async with Simulator(dialect="plus", **FAST) as sim:
        grid = await _imagine(http, sim, state="job-1")
        await _until(sim, grid, {"SUCCESS"})
        u2 = next(b.custom_id for b in sim.tasks[grid].buttons if "upsample::2" in b.custom_id)
        sim.inject("action", "submit_fault_after")
        async with http.post(
            sim.base_url + "/mj/submit/action", json={"taskId": grid, "customId": u2}
        ) as response:
            assert response.status == 500

        tasks = await _json(http, sim.base_url + "/sim/tasks")
        assert [(t["kind"], t["state"], t["parentId"], t["index"]) for t in tasks] == [
            ("imagine", "job-1", None, None),
            ("upsample", None, grid, 2),
        ]
        assert tasks[1]["customId"] == u2
        assert tasks[0]["status"] == "SUCCESS"
        assert tasks[0]["finishTime"] >= tasks[0]["submitTime"]

        actions = await _json(http, sim.base_url + "/sim/requests?route=action")
        assert [(r["route"], r["faults"]) for r in actions] == [
            ("POST /mj/submit/action", ["submit_fault_after"])
        ]
        assert actions[0]["body"] == {"taskId": grid, "customId": u2}
        everything = await _json(http, sim.base_url + "/sim/requests")
        assert {r["route"] for r in everything} >= {
            "POST /mj/submit/imagine",
            "POST /mj/submit/action",
            "GET /sim/tasks",
        }
        assert sim.request_log[-1].faults == ()
        assert json.dumps(everything)  # plain JSON all the way down


def test_fault_config_is_checked() -> None:
    """New probabilities must be in [0, 1]; spike_seconds is a duration."""
    with pytest.raises(ValueError, match="image_cut"):
        Faults(image_cut=1.5)
    with pytest.raises(ValueError, match="latency_spike"):
        Faults(latency_spike=-0.1)
    with pytest.raises(ValueError, match="spike_seconds"):
        Faults(spike_seconds=-1.0)
    assert Faults(spike_seconds=30.0).spike_seconds == 30.0
