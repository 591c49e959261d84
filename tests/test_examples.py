"""The examples in examples/, each driven end to end against the in-process simulator."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from _shared import FAST_POLL
from aiohttp.test_utils import TestClient, TestServer

import mjasync
from mjasync.simulator import Simulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["plus", "trueai", "newapi", "oss"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """A fast simulator for the examples, in each dialect the SDK must work against."""
    async with Simulator(dialect=request.param, time_scale=0.002, seed=2) as server:
        yield server


def presses(sim: Simulator) -> int:
    """Button presses the server received: /submit/action, or novicezk's /submit/change."""
    return sim.requests["POST /mj/submit/action"] + sim.requests["POST /mj/submit/change"]


async def test_asyncio_script_saves_the_grid_and_four_upscales(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The script imagines, upscales U1..U4 and saves five complete images."""
    script = _load("asyncio_script")
    saved = await script.main(
        "a red fox", tmp_path, base_url=sim.base_url, api_key="k", poll=FAST_POLL
    )
    assert len(saved) == 5
    assert all(path.read_bytes().endswith(PNG_IEND) for path in saved)
    assert presses(sim) == 4
    if sim.config.dialect == "oss":  # no /submit/action: U1..U4 went through /change
        assert sim.requests["POST /mj/submit/change"] == 4
    assert "submitted" in capsys.readouterr().out


async def test_fastapi_app_submits_reports_status_and_guards_its_webhook(sim: Simulator) -> None:
    """Lifespan opens the client; /imagine, /tasks/{id}?wait= and a token-checked /webhook."""
    pytest.importorskip("fastapi")
    example = _load("fastapi_app")
    # No public URL: nothing would deliver callbacks here, and an app that expects them
    # polls slowly. The route is still checked with the client's token.
    app = example.create_app(sim.base_url, "k", poll=FAST_POLL)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        submitted = await http.post("/imagine", json={"prompt": "a red fox"})
        assert submitted.status_code == 202
        task_id = submitted.json()["task_id"]
        done = await http.get(f"/tasks/{task_id}", params={"wait": 20})
        assert done.json()["status"] == "SUCCESS"
        assert "U1" in done.json()["buttons"]
        assert (await http.get("/tasks/nope")).status_code == 404
        assert (await http.post("/imagine", json={"prompt": " "})).status_code == 422

        mj: mjasync.Client = app.state.mj
        body = sim.task_json(task_id)
        assert (await http.post("/webhook", json=body)).status_code == 401
        wrong = await http.post("/webhook", params={"token": "wrong"}, json=body)
        assert wrong.status_code == 403
        right = await http.post("/webhook", params={"token": mj.notify_token}, json=body)
        assert right.status_code == 200
    assert mj.closed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_aiohttp_app_receives_real_callbacks_from_the_proxy(sim: Simulator) -> None:
    """The simulator calls the app's /webhook for real; waits finish, the token holds."""
    example = _load("aiohttp_app")
    port = _free_port()
    app = example.create_app(
        sim.base_url, "k", public_url=f"http://127.0.0.1:{port}", poll=FAST_POLL
    )
    async with TestClient(TestServer(app, port=port)) as http:
        submitted = await http.post("/imagine", json={"prompt": "a red fox"})
        assert submitted.status == 202
        task_id = (await submitted.json())["task_id"]
        done = await http.get(f"/tasks/{task_id}", params={"wait": "20"})
        assert (await done.json())["status"] == "SUCCESS"
        assert (await http.get("/tasks/nope")).status == 404
        assert (await http.post("/webhook", json=sim.task_json(task_id))).status == 401
    delivered = any(task_id in str(note) for note in sim.notifications)
    # new-api drops notifyHook unless its operator enabled it: the wait finished by polling.
    assert delivered is (sim.config.dialect != "newapi")
