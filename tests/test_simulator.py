"""The offline simulator, driven over HTTP with a raw aiohttp session (not the mjasync client)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _shared import PNG_URI, PNG_URI_2, SIM_FAST
from _shared import sim_reaches as wait_for
from aiohttp import web
from aiohttp.test_utils import TestServer

from mjasync.simulator import Faults, Simulator, SimulatorConfig, create_app, get_state

FAST = {**SIM_FAST, "seed_delay": 1.0}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, closed even when the test fails."""
    async with aiohttp.ClientSession() as session:
        yield session


def _decode(text: str) -> Any:
    """JSON when the body is JSON, the text otherwise, None when empty."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


async def post(
    http: aiohttp.ClientSession, sim: Simulator, path: str, body: Any, **kw: Any
) -> tuple[int, Any]:
    async with http.post(sim.base_url + path, json=body, **kw) as resp:
        return resp.status, _decode(await resp.text())


async def get(http: aiohttp.ClientSession, sim: Simulator, path: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(sim.base_url + path, **kw) as resp:
        return resp.status, _decode(await resp.text())


async def imagine(http: aiohttp.ClientSession, sim: Simulator, prompt: str = "a red fox") -> str:
    status, body = await post(http, sim, "/mj/submit/imagine", {"prompt": prompt})
    assert status == 200
    assert body["code"] in (1, 22), body
    return str(body["result"])


async def finished(http: aiohttp.ClientSession, sim: Simulator, prompt: str = "a red fox") -> str:
    task_id = await imagine(http, sim, prompt)
    await wait_for(sim, task_id, {"SUCCESS"})
    return task_id


def parse_png(data: bytes) -> tuple[int, int, bytes]:
    """Validate signature, chunk CRCs and IDAT; return (width, height, raw scanlines)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, kind
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", payload[:8])
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * 3)
    return width, height, raw


# -- lifecycle per dialect -------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["plus", "trueai", "newapi", "oss"])
async def test_imagine_lifecycle_to_success(http: aiohttp.ClientSession, dialect: str) -> None:
    """Every dialect walks NOT_START -> SUBMITTED -> IN_PROGRESS -> SUCCESS with previews."""
    # new-api syncs twice per simulated step here, so its copy shows the progress too.
    async with Simulator(dialect=dialect, time_scale=0.002, newapi_sync_interval=0.5) as sim:
        status, body = await post(
            http, sim, "/mj/submit/imagine", {"prompt": "a red fox", "state": "s1"}
        )
        assert status == 200
        assert body["code"] == 1
        assert body["properties"]["discordInstanceId"]
        task_id = body["result"]
        assert isinstance(task_id, str)
        assert re.fullmatch(r"\d{16}", task_id)
        seen: list[tuple[str, str]] = []
        for _ in range(3000):
            _, task = await get(http, sim, f"/mj/task/{task_id}/fetch")
            seen.append((task["status"], task["progress"]))
            if task["status"] == "SUCCESS":
                break
            if task["status"] == "IN_PROGRESS":
                # new-api links its own /mj/image/{id} (MjForwardUrlEnabled), with ?rand=.
                marker = "?rand=" if dialect == "newapi" else "-preview-"
                assert marker in task["imageUrl"]
            await asyncio.sleep(0.001)
        assert task["status"] == "SUCCESS"
        assert task["progress"] == "100%"
        final = f"/mj/image/{task_id}" if dialect == "newapi" else f"/sim/images/{task_id}.png"
        assert task["imageUrl"].endswith(final)
        assert task["state"] == "s1"
        assert task["finishTime"] >= task["startTime"] >= task["submitTime"] > 0
        statuses = [s for s, _ in seen]
        assert "IN_PROGRESS" in statuses
        if dialect == "newapi":
            assert statuses[0] in {"", "NOT_START"}  # "": before new-api's first sync
            assert set(task) == {
                "id", "action", "customId", "botType", "prompt", "promptEn", "description",
                "state", "submitTime", "startTime", "finishTime", "imageUrl", "videoUrl",
                "videoUrls", "status", "progress", "failReason", "buttons", "maskBase64",
                "properties",
            }  # fmt: skip
            assert task["properties"] == {"finalPrompt": "a red fox", "finalZhPrompt": ""}
            assert task["videoUrls"] is None
            assert task["failReason"] == ""
        if dialect == "oss":
            assert "buttons" not in task
        else:
            labels = [b["label"] for b in task["buttons"]]
            assert labels == ["U1", "U2", "U3", "U4", "", "V1", "V2", "V3", "V4"]
            h = sim.tasks[task_id].message_hash
            assert task["buttons"][4]["customId"] == f"MJ::JOB::reroll::0::{h}::SOLO"
            assert task["buttons"][4]["emoji"] == "🔄"
        if dialect == "plus":
            assert task["imageWidth"] == task["imageHeight"] == 64
            assert task["properties"]["messageHash"] == sim.tasks[task_id].message_hash
        if dialect == "trueai":
            assert task["isCompleted"] is True
            assert task["mode"] == "FAST"
            assert task["imageUrls"] is None  # EnableFillOfficialCdn is off by default
            assert "displays" in task
            assert task["parentId"] is None
        if dialect == "newapi":
            assert {k: v for k, v in task.items() if k != "imageUrl"} == {
                k: v for k, v in sim.task_json(task_id).items() if k != "imageUrl"
            }
        else:
            assert task == sim.task_json(task_id)


async def test_speed_mode_prefix_and_numeric_ids(http: aiohttp.ClientSession) -> None:
    """/mj-relax/mj/... is the same route with mode RELAX; numeric_ids sends a JSON number."""
    async with Simulator(dialect="trueai", numeric_ids=True, **FAST) as sim:
        _, body = await post(http, sim, "/mj-relax/mj/submit/imagine", {"prompt": "x"})
        assert isinstance(body["result"], int)
        task_id = str(body["result"])
        assert sim.tasks[task_id].mode == "RELAX"
        assert sim.requests["POST /mj/submit/imagine"] == 1
        await wait_for(sim, task_id, {"SUCCESS"})
        _, task = await get(http, sim, f"/mj-turbo/mj/task/{task_id}/fetch")
        assert task["mode"] == "RELAX"


# -- queue, banned words, validation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "full_code"), [("plus", 23), ("oss", 23), ("trueai", 9), ("newapi", 23)]
)
async def test_queue_codes(http: aiohttp.ClientSession, dialect: str, full_code: int) -> None:
    """A free slot answers 1, a wait 22 + numberOfQueues, a full queue the dialect's refusal."""
    async with Simulator(dialect=dialect, slots=1, queue_size=2, time_scale=1.0) as sim:
        codes = []
        for n in range(3):
            status, body = await post(http, sim, "/mj/submit/imagine", {"prompt": f"p{n}"})
            assert status == 200
            codes.append((body["code"], body["properties"].get("numberOfQueues")))
        if dialect == "oss":
            # novicezk counts the tasks already waiting: the first to wait hears code 1.
            assert codes == [(1, None), (1, None), (22, 1)]
        else:
            queued = 1 if dialect == "newapi" else 22  # new-api rewrites "code":22 to 1
            assert codes == [(1, None), (queued, 1), (queued, 2)]
        status, body = await post(http, sim, "/mj/submit/imagine", {"prompt": "p3"})
        # new-api passes the upstream's refusal through, HTTP status and all.
        assert (status, body["code"]) == (200, full_code)
        assert body["result"] is None
        if dialect == "trueai":
            assert body["description"] == "提交失败，队列已满，请稍后重试"
        else:
            assert body["description"] == "队列已满，请稍后尝试"
            assert body["properties"] == {"discordInstanceId": sim.state.instance_id}
        assert len(sim.tasks) == 3
        # Finishing the running task frees the slot for the first waiting one.
        first = next(iter(sim.tasks))
        sim.complete(first)
        waiting = list(sim.tasks)[1]
        await asyncio.sleep(0)
        assert sim.tasks[waiting].holds_slot


async def test_banned_words_per_dialect(http: aiohttp.ClientSession) -> None:
    """Code 24 at submit (oss/plus, and passed through by newapi), or a later FAILURE (trueai)."""
    for dialect in ("plus", "oss", "newapi"):
        async with Simulator(dialect=dialect, **FAST) as sim:
            status, body = await post(http, sim, "/mj/submit/imagine", {"prompt": "much Gore"})
            assert (status, body["code"]) == (200, 24)
            assert body["properties"] == {"promptEn": "much Gore", "bannedWord": "gore"}
            assert not sim.tasks
    async with Simulator(dialect="trueai", **FAST) as sim:
        task_id = await imagine(http, sim, "gore everywhere")
        await wait_for(sim, task_id, {"FAILURE"})
        _, task = await get(http, sim, f"/mj/task/{task_id}/fetch")
        assert task["failReason"] == "可能包含敏感词"
        assert task["progress"] == ""


async def test_validation_errors(http: aiohttp.ClientSession) -> None:
    """Blank prompt, blend image count, describe without a data URI: code 4."""
    async with Simulator(dialect="plus", **FAST) as sim:
        _, body = await post(http, sim, "/mj/submit/imagine", {"prompt": "  "})
        assert body["code"] == 4
        _, body = await post(http, sim, "/mj/submit/blend", {"base64Array": [PNG_URI]})
        assert body["code"] == 4
        _, body = await post(http, sim, "/mj/submit/describe", {"base64": "not a uri"})
        assert body["code"] == 4
        _, body = await post(http, sim, "/mj/submit/blend", {"base64Array": [PNG_URI, PNG_URI_2]})
        assert body["code"] == 1
        assert sim.tasks[body["result"]].description.startswith("/blend ")


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "good", "bad"),
    [
        ("plus", [{"mj-api-secret": "k"}], [{}, {"Authorization": "k"}]),
        ("oss", [{"mj-api-secret": "k"}], [{"mj-api-secret": "x"}]),
        (
            "trueai",
            [{"Authorization": "k"}, {"Mj-Api-Secret": "k"}],
            [{"Authorization": "Bearer k"}, {}],
        ),
        (
            "newapi",
            [{"Authorization": "Bearer k"}, {"Authorization": "k"}, {"mj-api-secret": "k"}],
            [{"Authorization": "Bearer nope"}, {}],
        ),
    ],
)
async def test_auth_per_dialect(
    http: aiohttp.ClientSession, dialect: str, good: list[dict[str, str]], bad: list[dict[str, str]]
) -> None:
    """Each dialect's accepted headers pass; the rest get that dialect's 401."""
    async with Simulator(dialect=dialect, api_key="k", **FAST) as sim:
        for headers in good:
            status, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "x"}, headers=headers
            )
            assert status == 200, headers
            assert body["code"] == 1, headers
        for headers in bad:
            async with http.post(
                sim.base_url + "/mj/submit/imagine", json={"prompt": "x"}, headers=headers
            ) as resp:
                assert resp.status == 401, headers
                text = await resp.text()
            if dialect in ("plus", "oss"):
                assert text == ""
            elif dialect == "trueai":
                assert text == "Authorization header missing."
            else:
                message = json.loads(text)["error"]["message"]
                assert message.startswith("Invalid token (request id: ")
        # Images need no key.
        task_id = next(iter(sim.tasks))
        await wait_for(sim, task_id, {"SUCCESS"})
        async with http.get(sim.tasks[task_id].image_url or "") as resp:
            assert resp.status == 200


# -- unknown ids -------------------------------------------------------------------------------


async def test_unknown_fetch_shapes(http: aiohttp.ClientSession) -> None:
    """oss/plus: empty 200; trueai: 204; newapi: 400 task_no_found."""
    expected = {"oss": (200, None), "plus": (200, None), "trueai": (204, None)}
    for dialect, shape in expected.items():
        async with Simulator(dialect=dialect, **FAST) as sim:
            assert await get(http, sim, "/mj/task/123/fetch") == shape
    async with Simulator(dialect="newapi", **FAST) as sim:
        status, body = await get(http, sim, "/mj/task/123/fetch")
        assert status == 400
        assert body == {"description": "task_no_found ", "type": "upstream_error", "code": 4}


@pytest.mark.parametrize(
    ("dialect", "http_status", "code"), [("plus", 200, 3), ("trueai", 404, 3), ("newapi", 400, 4)]
)
async def test_action_unknown_parent(
    http: aiohttp.ClientSession, dialect: str, http_status: int, code: int
) -> None:
    """An action on an unknown task: code 3 (trueai with a 404); new-api's own 400 code 4."""
    async with Simulator(dialect=dialect, **FAST) as sim:
        status, body = await post(
            http, sim, "/mj/submit/action", {"taskId": "1", "customId": "MJ::JOB::upsample::1::x"}
        )
        assert (status, body["code"]) == (http_status, code)
        if dialect == "newapi":
            assert body == {"code": 4, "description": "task_not_found ", "type": "upstream_error"}


# -- actions and modals ------------------------------------------------------------------------


async def test_upscale_then_post_upscale_buttons(http: aiohttp.ClientSession) -> None:
    """U2 makes a single-image UPSCALE with the v6 post-upscale buttons; U2 turns green."""
    async with Simulator(dialect="plus", **FAST) as sim:
        grid = await finished(http, sim)
        h = sim.tasks[grid].message_hash
        custom_id = f"MJ::JOB::upsample::2::{h}"
        _, body = await post(
            http, sim, "/mj/submit/action", {"taskId": grid, "customId": custom_id}
        )
        assert body["code"] == 1
        up = body["result"]
        assert sim.tasks[grid].button(custom_id).style == 3  # type: ignore[union-attr]
        await wait_for(sim, up, {"SUCCESS"})
        _, task = await get(http, sim, f"/mj/task/{up}/fetch")
        assert task["action"] == "UPSCALE"
        uh = sim.tasks[up].message_hash
        ids = [b["customId"] for b in task["buttons"]]
        assert f"MJ::JOB::upsample_v6_2x_subtle::1::{uh}::SOLO" in ids
        assert f"MJ::CustomZoom::{uh}" in ids
        assert f"MJ::JOB::pan_left::1::{uh}::SOLO" in ids
        labels = {b["label"] for b in task["buttons"]}
        assert {"Vary (Region)", "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom"} <= labels
        # A customId the parent does not have, and a parent that is not SUCCESS: code 4.
        _, body = await post(
            http, sim, "/mj/submit/action", {"taskId": grid, "customId": "MJ::JOB::upsample::1::zz"}
        )
        assert body["code"] == 4
        running = await imagine(http, sim)
        _, body = await post(
            http, sim, "/mj/submit/action", {"taskId": running, "customId": custom_id}
        )
        assert body["code"] == 4
        # Zoom Out 2x is a ZOOM grid without a modal.
        zoom = f"MJ::Outpaint::50::1::{uh}::SOLO"
        _, body = await post(http, sim, "/mj/submit/action", {"taskId": up, "customId": zoom})
        assert body["code"] == 1
        assert sim.tasks[body["result"]].action == "ZOOM"


async def test_custom_zoom_modal_plus_gives_new_id(http: aiohttp.ClientSession) -> None:
    """CustomZoom answers 21 + MODAL; the modal needs --zoom 1..2; PLUS runs a new id."""
    async with Simulator(dialect="plus", **FAST) as sim:
        grid = await finished(http, sim)
        _, body = await post(
            http,
            sim,
            "/mj/submit/action",
            {"taskId": grid, "customId": f"MJ::JOB::upsample::1::{sim.tasks[grid].message_hash}"},
        )
        up = body["result"]
        await wait_for(sim, up, {"SUCCESS"})
        zoom_id = f"MJ::CustomZoom::{sim.tasks[up].message_hash}"
        _, body = await post(http, sim, "/mj/submit/action", {"taskId": up, "customId": zoom_id})
        assert body["code"] == 21
        assert body["description"] == "Waiting for window confirm"
        assert body["properties"]["finalPrompt"] == "a red fox"
        assert body["properties"]["remix"] is True
        modal_id = body["result"]
        _, task = await get(http, sim, f"/mj/task/{modal_id}/fetch")
        assert task["status"] == "MODAL"
        for bad in ("a red fox", "a red fox --zoom 3", "a red fox --zoom 0.5"):
            _, body = await post(http, sim, "/mj/submit/modal", {"taskId": modal_id, "prompt": bad})
            assert body["code"] == 4
            assert "--zoom" in body["description"]
        _, body = await post(http, sim, "/mj/submit/action", {"taskId": grid, "customId": "x"})
        assert body["code"] == 4
        _, body = await post(
            http, sim, "/mj/submit/modal", {"taskId": modal_id, "prompt": "a red fox --zoom 1.5"}
        )
        assert body["code"] == 1
        assert body["result"] != modal_id
        assert sim.tasks[modal_id].status == "CANCEL"
        await wait_for(sim, body["result"], {"SUCCESS"})
        assert sim.tasks[body["result"]].prompt == "a red fox --zoom 1.5"
        # A task that is not MODAL cannot be confirmed.
        _, body = await post(http, sim, "/mj/submit/modal", {"taskId": grid, "prompt": "x"})
        assert body["code"] == 4


async def test_inpaint_modal_trueai_keeps_id(http: aiohttp.ClientSession) -> None:
    """Vary (Region) needs a PNG mask; trueai runs the same id after the modal."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        grid = await finished(http, sim)
        h = sim.tasks[grid].message_hash
        _, body = await post(
            http,
            sim,
            "/mj/submit/action",
            {"taskId": grid, "customId": f"MJ::JOB::upsample::3::{h}"},
        )
        up = body["result"]
        await wait_for(sim, up, {"SUCCESS"})
        inpaint = f"MJ::Inpaint::1::{sim.tasks[up].message_hash}::SOLO"
        _, body = await post(http, sim, "/mj/submit/action", {"taskId": up, "customId": inpaint})
        assert body["code"] == 21
        modal_id = body["result"]
        _, body = await post(http, sim, "/mj/submit/modal", {"taskId": modal_id, "prompt": "x"})
        assert body["code"] == 4
        jpeg = "data:image/jpeg;base64," + base64.b64encode(b"jpg").decode()
        _, body = await post(
            http, sim, "/mj/submit/modal", {"taskId": modal_id, "maskBase64": jpeg}
        )
        assert body["code"] == 4
        _, body = await post(
            http,
            sim,
            "/mj/submit/modal",
            {"taskId": modal_id, "prompt": "a hat", "maskBase64": PNG_URI},
        )
        assert body["code"] == 1
        assert body["result"] == modal_id
        await wait_for(sim, modal_id, {"SUCCESS"})
        assert sim.tasks[modal_id].action == "VARIATION"
        # Unknown modal task: code 3 with trueai's 404.
        status, body = await post(http, sim, "/mj/submit/modal", {"taskId": "9", "prompt": "x"})
        assert (status, body["code"]) == (404, 3)


async def test_remix_variation_modal_and_newapi_rewrite(http: aiohttp.ClientSession) -> None:
    """With remix on, V1 opens a modal: 21 in plus, 1 in newapi with the task left in MODAL."""
    for dialect, code in (("plus", 21), ("newapi", 1)):
        async with Simulator(dialect=dialect, remix=True, newapi_sync_interval=0, **FAST) as sim:
            grid = await finished(http, sim)
            h = sim.tasks[grid].message_hash
            _, body = await post(
                http,
                sim,
                "/mj/submit/action",
                {"taskId": grid, "customId": f"MJ::JOB::variation::1::{h}"},
            )
            assert body["code"] == code
            task_id = body["result"]
            await asyncio.sleep(0.02)
            assert sim.tasks[task_id].status == "MODAL"
            _, body = await post(
                http, sim, "/mj/submit/modal", {"taskId": task_id, "prompt": "a blue fox"}
            )
            assert body["code"] == 1
            await wait_for(sim, body["result"], {"SUCCESS"})
            # Upscales never need a modal.
            _, body = await post(
                http,
                sim,
                "/mj/submit/action",
                {"taskId": grid, "customId": f"MJ::JOB::upsample::1::{h}"},
            )
            assert body["code"] == 1


async def test_newapi_custom_zoom_keeps_21_and_rejects_picreader(
    http: aiohttp.ClientSession,
) -> None:
    """new-api keeps code 21 for CustomZoom and refuses PicReader customIds."""
    async with Simulator(dialect="newapi", newapi_sync_interval=0, **FAST) as sim:
        grid = await finished(http, sim)
        await get(http, sim, f"/mj/task/{grid}/fetch")
        h = sim.tasks[grid].message_hash
        _, body = await post(
            http,
            sim,
            "/mj/submit/action",
            {"taskId": grid, "customId": f"MJ::JOB::upsample::1::{h}"},
        )
        up = body["result"]
        await wait_for(sim, up, {"SUCCESS"})
        zoom = f"MJ::CustomZoom::{sim.tasks[up].message_hash}"
        _, body = await post(http, sim, "/mj/submit/action", {"taskId": up, "customId": zoom})
        assert body["code"] == 21
        status, body = await post(
            http, sim, "/mj/submit/action", {"taskId": up, "customId": "MJ::Job::PicReader::1"}
        )
        assert status == 400
        assert body["error"]["type"] == "new_api_error"


async def test_describe_picreader_and_imagine_all(http: aiohttp.ClientSession) -> None:
    """Describe yields four numbered prompts and PicReader buttons; 'Imagine all' makes four."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        _, body = await post(http, sim, "/mj/submit/describe", {"base64": PNG_URI, "state": "st"})
        task_id = body["result"]
        await wait_for(sim, task_id, {"SUCCESS"})
        _, task = await get(http, sim, f"/mj/task/{task_id}/fetch")
        final = task["properties"]["finalPrompt"]
        assert final.startswith("1️⃣ ")
        assert "\n\n2️⃣ " in final
        assert "\n\n4️⃣ " in final
        assert task["promptEn"] == final
        async with http.get(task["imageUrl"]) as resp:
            assert await resp.read() == b"\x89PNG\r\n\x1a\nfake"
        ids = [b["customId"] for b in task["buttons"]]
        assert ids == [
            "MJ::Job::PicReader::1",
            "MJ::Job::PicReader::2",
            "MJ::Job::PicReader::3",
            "MJ::Job::PicReader::4",
            "MJ::Picread::Retry",
            "MJ::Job::PicReader::all",
        ]
        assert task["buttons"][5]["emoji"] == "🎉"
        _, body = await post(
            http, sim, "/mj/submit/action", {"taskId": task_id, "customId": "MJ::Job::PicReader::2"}
        )
        assert body["code"] == 21
        assert body["properties"]["finalPrompt"] == sim.tasks[task_id].choices[1]
        _, body = await post(
            http,
            sim,
            "/mj/submit/action",
            {"taskId": task_id, "customId": "MJ::Job::PicReader::all"},
        )
        assert body["code"] == 1
        children = body["result"].split(",")
        assert len(children) == 4
        assert [sim.tasks[c].state for c in children] == ["st::1", "st::2", "st::3", "st::4"]
        assert all(sim.tasks[c].action == "IMAGINE" for c in children)


async def test_shorten_upload_swap_edit_video(http: aiohttp.ClientSession) -> None:
    """The less common submits each make their task (or URLs) in trueai."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        _, body = await post(http, sim, "/mj/submit/shorten", {"prompt": "a very long prompt"})
        shorten = body["result"]
        _, body = await post(
            http, sim, "/mj/submit/upload-discord-images", {"base64Array": [PNG_URI, PNG_URI_2]}
        )
        assert body["code"] == 1
        assert len(body["result"]) == 2
        async with http.get(body["result"][1]) as resp:
            assert resp.content_type == "image/png"
            assert await resp.read() == b"\x89PNG\r\n\x1a\nother"
        _, body = await post(
            http, sim, "/mj/insight-face/swap", {"sourceBase64": PNG_URI, "targetBase64": PNG_URI}
        )
        assert body["code"] == 4
        _, body = await post(
            http,
            sim,
            "/mj/insight-face/swap",
            {"sourceBase64": PNG_URI, "targetBase64": PNG_URI_2},
        )
        swap = body["result"]
        _, body = await post(http, sim, "/mj/submit/edit", {"prompt": "hat", "image": PNG_URI})
        edit = body["result"]
        _, body = await post(http, sim, "/mj/submit/video", {"prompt": "waves", "image": PNG_URI})
        vid = body["result"]
        for task_id in (shorten, swap, edit, vid):
            await wait_for(sim, task_id, {"SUCCESS"})
        assert next(b["customId"][:28] for b in sim.task_json(shorten)["buttons"]) == (
            "MJ::Job::PromptAnalyzer::1"
        )
        assert len(sim.task_json(shorten)["buttons"]) == 5
        swap_json = sim.task_json(swap)
        assert swap_json["action"] == "SWAP_FACE"
        assert swap_json["botType"] == "INSIGHT_FACE"
        assert swap_json["buttons"] == []
        assert sim.task_json(edit)["action"] == "EDIT"
        video_json = sim.task_json(vid)
        assert video_json["action"] == "VIDEO"
        # trueai: imageUrl is the video itself; videoUrl(s) need EnableFillOfficialCdn.
        assert video_json["imageUrl"].endswith(".mp4")
        assert video_json["videoUrl"] is None
        h = sim.tasks[vid].message_hash
        assert video_json["buttons"][0]["customId"] == f"MJ::JOB::video_virtual_upscale::1::{h}"
        async with http.get(video_json["imageUrl"]) as resp:
            assert resp.content_type == "video/mp4"


# -- images ------------------------------------------------------------------------------------


async def test_png_valid_and_distinct(http: aiohttp.ClientSession) -> None:
    """Finals are valid PNGs of image_size, distinct per task; previews differ from finals."""
    async with Simulator(dialect="plus", image_size=32, **FAST) as sim:
        a = await finished(http, sim, "one")
        b = await finished(http, sim, "two")
        images = {}
        for task_id in (a, b):
            async with http.get(sim.tasks[task_id].image_url or "") as resp:
                assert resp.status == 200
                assert resp.content_type == "image/png"
                images[task_id] = await resp.read()
            assert parse_png(images[task_id])[:2] == (32, 32)
        assert images[a] != images[b]
        assert parse_png(images[a])[2] != parse_png(images[b])[2]
        async with http.get(f"{sim.base_url}/sim/images/{a}-preview-40.png") as resp:
            preview = await resp.read()
        assert parse_png(preview)[2] != parse_png(images[a])[2]
        for name in ("123.png", f"{a}.jpg", f"{a}-preview-400.png"):
            async with http.get(f"{sim.base_url}/sim/images/{name}") as resp:
                assert resp.status == 404


# -- listing, routes, cancel, seed -------------------------------------------------------------


async def test_list_by_condition_and_ids(http: aiohttp.ClientSession) -> None:
    """Known ids come back (any order), unknown ones are omitted; list-by-ids adds displays."""
    async with Simulator(dialect="plus", **FAST) as sim:
        ids = [await imagine(http, sim, f"p{n}") for n in range(5)]
        status, body = await post(http, sim, "/mj/task/list-by-condition", {"ids": [*ids, "999"]})
        assert status == 200
        assert sorted(t["id"] for t in body) == sorted(ids)
        _, body = await post(http, sim, "/mj/task/list-by-ids", {"ids": ids[:2]})
        assert len(body) == 2
        assert all("displays" in t for t in body)
        _, body = await post(http, sim, "/mj/task/list-by-condition", {})
        assert body == []


async def test_disabled_and_foreign_routes_404(http: aiohttp.ClientSession) -> None:
    """disabled_routes and routes outside the dialect answer what the server lacks with."""
    async with Simulator(
        dialect="plus", disabled_routes={"list-by-condition", "list-by-ids"}, **FAST
    ) as sim:
        for path in ("/mj/task/list-by-condition", "/mj/task/list-by-ids"):
            status, _ = await post(http, sim, path, {"ids": []})
            assert status == 404
        assert sim.requests["POST /mj/task/list-by-condition"] == 1
    async with Simulator(dialect="oss", **FAST) as sim:
        for path in ("/mj/submit/action", "/mj/submit/shorten", "/mj/task/list-by-ids"):
            async with http.post(sim.base_url + path, json={}) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"] == "Not Found"
    async with (
        Simulator(dialect="newapi", **FAST) as sim,
        http.post(sim.base_url + "/mj/task/1/cancel") as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "text/html"


async def test_cancel_per_dialect(http: aiohttp.ClientSession) -> None:
    """PLUS: code 1 + CANCEL (unknown: code 3); trueai (admin): empty 200 + FAILURE '取消任务'."""
    async with Simulator(dialect="plus", time_scale=1.0) as sim:
        task_id = await imagine(http, sim)
        status, body = await post(http, sim, f"/mj/task/{task_id}/cancel", None)
        assert (status, body["code"]) == (200, 1)
        assert sim.tasks[task_id].status == "CANCEL"
        assert sim.tasks[task_id].holds_slot is False
        _, body = await post(http, sim, "/mj/task/42/cancel", None)
        assert body["code"] == 3
    admin = {"Authorization": "admin-key"}
    async with Simulator(dialect="trueai", api_key="admin-key", time_scale=1.0) as sim:
        status, body = await post(http, sim, "/mj/submit/imagine", {"prompt": "x"}, headers=admin)
        task_id = body["result"]
        status, body = await post(http, sim, f"/mj/task/{task_id}/cancel", None, headers=admin)
        assert (status, body) == (200, None)
        _, task = await get(http, sim, f"/mj/task/{task_id}/fetch", headers=admin)
        assert task["status"] == "FAILURE"
        assert task["failReason"] == "取消任务"


async def test_image_seed(http: aiohttp.ClientSession) -> None:
    """Seed of a SUCCESS task after seed_delay; code 4 before; code 3 when unknown."""
    async with Simulator(dialect="plus", **FAST) as sim:
        task_id = await imagine(http, sim)
        _, body = await get(http, sim, f"/mj/task/{task_id}/image-seed")
        assert body["code"] == 4
        await wait_for(sim, task_id, {"SUCCESS"})
        _, body = await get(http, sim, f"/mj/task/{task_id}/image-seed")
        assert body["code"] == 1
        assert body["description"] == "成功"
        assert body["result"].isdigit()
        _, body = await get(http, sim, "/mj/task/1/image-seed")
        assert body["code"] == 3
    async with Simulator(dialect="trueai", **FAST) as sim:
        status, body = await get(http, sim, "/mj/task/1/image-seed")
        assert (status, body["code"]) == (404, 3)


# -- driving tasks from a test ------------------------------------------------------------------


async def test_complete_fail_stall(http: aiohttp.ClientSession) -> None:
    """sim.complete / fail / stall move tasks directly and free slots."""
    async with Simulator(dialect="oss", slots=1, time_scale=1.0) as sim:
        a = await imagine(http, sim, "a")
        b = await imagine(http, sim, "b")
        c = await imagine(http, sim, "c")
        sim.stall(b)
        sim.complete(a)
        assert sim.tasks[a].status == "SUCCESS"
        assert sim.tasks[a].image_url
        assert sim.tasks[c].holds_slot  # b is stalled, so c took the slot
        sim.fail(c, "Invalid parameter")
        _, task = await get(http, sim, f"/mj/task/{c}/fetch")
        assert (task["status"], task["failReason"], task["progress"]) == (
            "FAILURE",
            "Invalid parameter",
            "",
        )
        assert sim.tasks[b].status == "NOT_START"
        with pytest.raises(ValueError, match="already"):
            sim.complete(a)


# -- notifyHook --------------------------------------------------------------------------------


async def _receiver() -> tuple[TestServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    return server, received


async def test_notify_hook_deliveries(http: aiohttp.ClientSession) -> None:
    """Every status/progress change is POSTed to notifyHook, and recorded."""
    server, received = await _receiver()
    try:
        async with Simulator(dialect="plus", progress_steps=3, **FAST) as sim:
            hook = str(server.make_url("/hook"))
            _, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "cat", "notifyHook": hook}
            )
            task_id = body["result"]
            await wait_for(sim, task_id, {"SUCCESS"})
            for _ in range(1000):
                if len(sim.notifications) >= 5:
                    break
                await asyncio.sleep(0.001)
        progress = sorted((n.body["status"], n.body["progress"]) for n in sim.notifications)
        assert progress == [
            ("IN_PROGRESS", "25%"),
            ("IN_PROGRESS", "50%"),
            ("IN_PROGRESS", "75%"),
            ("SUBMITTED", "0%"),
            ("SUCCESS", "100%"),
        ]
        assert all(n.delivered_ok and n.url == hook for n in sim.notifications)
        assert len(received) == 5
        assert all(r["id"] == task_id for r in received)
    finally:
        await server.close()


async def test_notify_faults_and_newapi_ignores_hook(http: aiohttp.ClientSession) -> None:
    """notify_drop swallows deliveries, notify_duplicate doubles them; newapi needs opt-in."""
    server, _received = await _receiver()
    hook = str(server.make_url("/hook"))
    try:
        async with Simulator(dialect="newapi", **FAST) as sim:
            _, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "c", "notifyHook": hook}
            )
            await wait_for(sim, body["result"], {"SUCCESS"})
            assert sim.notifications == []
            assert sim.tasks[body["result"]].notify_hook is None
        async with Simulator(
            dialect="trueai", progress_steps=1, faults=Faults(notify_drop=1.0), **FAST
        ) as sim:
            _, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "c", "notifyHook": hook}
            )
            await wait_for(sim, body["result"], {"SUCCESS"})
            assert sim.notifications == []
            assert len(sim.dropped_notifications) == 3
        async with Simulator(
            dialect="plus", progress_steps=1, faults=Faults(notify_duplicate=1.0), **FAST
        ) as sim:
            _, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "c", "notifyHook": hook}
            )
            await wait_for(sim, body["result"], {"SUCCESS"})
            for _ in range(1000):
                if len(sim.notifications) >= 6:
                    break
                await asyncio.sleep(0.001)
            assert len(sim.notifications) == 6
        # An unreachable hook is recorded as a failed attempt, never retried.
        async with Simulator(dialect="plus", progress_steps=0, **FAST) as sim:
            _, body = await post(
                http,
                sim,
                "/mj/submit/imagine",
                {"prompt": "c", "notifyHook": "http://127.0.0.1:9/nothing"},
            )
            await wait_for(sim, body["result"], {"SUCCESS"})
            for _ in range(2000):
                if len(sim.notifications) >= 2:
                    break
                await asyncio.sleep(0.001)
            assert [n.delivered_ok for n in sim.notifications] == [False, False]
    finally:
        await server.close()


# -- faults ------------------------------------------------------------------------------------


async def test_injected_http_faults(http: aiohttp.ClientSession) -> None:
    """Injected faults hit exactly the next N requests of their route."""
    async with Simulator(dialect="plus", **FAST) as sim:
        sim.inject("POST /mj/submit/imagine", "server_error", times=2, status=502)
        for _ in range(2):
            async with http.post(sim.base_url + "/mj/submit/imagine", json={"prompt": "x"}) as r:
                assert r.status == 502
        assert not sim.tasks
        task_id = await imagine(http, sim)

        sim.inject("fetch", "rate_limit", retry_after=0.25)
        async with http.get(f"{sim.base_url}/mj/task/{task_id}/fetch") as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "0.25"
            assert await resp.read() == b""

        sim.inject("/mj/task/{id}/fetch", "malformed")
        async with http.get(f"{sim.base_url}/mj/task/{task_id}/fetch") as resp:
            assert resp.status == 200
            text = await resp.text()
        with pytest.raises(ValueError, match=r"."):
            json.loads(text)

        # aiohttp's client silently retries an idempotent GET once after a disconnect.
        sim.inject("fetch", "drop", times=2)
        before = sim.requests["GET /mj/task/{id}/fetch"]
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.get(f"{sim.base_url}/mj/task/{task_id}/fetch") as resp:
                await resp.read()
        assert sim.requests["GET /mj/task/{id}/fetch"] == before + 2

        sim.inject("fetch", "latency", real_seconds=0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _ = await get(http, sim, f"/mj/task/{task_id}/fetch")
        assert status == 200
        assert loop.time() - started >= 0.045  # timers may fire a hair early

        with pytest.raises(ValueError, match="no route"):
            sim.inject("/mj/nothing", "drop")
        with pytest.raises(ValueError, match="unknown fault"):
            sim.inject("fetch", "explode")


async def test_submit_fault_before_and_after(http: aiohttp.ClientSession) -> None:
    """'before' creates nothing; 'after' creates the task but the client never learns its id."""
    async with Simulator(dialect="plus", **FAST) as sim:
        sim.inject("imagine", "submit_fault_before", drop=True)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(http, sim, "/mj/submit/imagine", {"prompt": "x"})
        assert not sim.tasks
        sim.inject("imagine", "submit_fault_after")
        status, _ = await post(http, sim, "/mj/submit/imagine", {"prompt": "x"})
        assert status == 500
        assert len(sim.tasks) == 1
        sim.inject("imagine", "submit_fault_after", drop=True)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(http, sim, "/mj/submit/imagine", {"prompt": "x"})
        assert len(sim.tasks) == 2


async def test_task_faults(http: aiohttp.ClientSession) -> None:
    """task_failure ends in FAILURE with an English reason; stuck never leaves IN_PROGRESS."""
    async with Simulator(dialect="plus", **FAST) as sim:
        sim.inject("imagine", "task_failure", reason="Invalid parameter")
        failing = await imagine(http, sim)
        sim.inject("imagine", "stuck")
        stuck = await imagine(http, sim)
        await wait_for(sim, failing, {"FAILURE"})
        assert sim.tasks[failing].fail_reason == "Invalid parameter"
        await wait_for(sim, stuck, {"IN_PROGRESS"})
        await asyncio.sleep(0.05)
        assert sim.tasks[stuck].status == "IN_PROGRESS"
    async with Simulator(dialect="plus", faults=Faults(task_failure=1.0), **FAST) as sim:
        task_id = await imagine(http, sim)
        await wait_for(sim, task_id, {"FAILURE"})
        assert re.fullmatch(r"[A-Z][A-Za-z :]+", sim.tasks[task_id].fail_reason or "")


async def test_probabilistic_faults_are_seeded_and_scoped(http: aiohttp.ClientSession) -> None:
    """Same seed, same outcomes; routes= limits faults to those routes."""

    async def outcomes(seed: int) -> list[int]:
        cfg = SimulatorConfig(
            dialect="plus",
            seed=seed,
            faults=Faults(server_error=0.5, routes=frozenset({"fetch"})),
            **FAST,  # type: ignore[arg-type]
        )
        async with Simulator(cfg) as sim:
            task_id = await imagine(http, sim)  # never faulted: not in routes
            statuses = []
            for _ in range(20):
                async with http.get(f"{sim.base_url}/mj/task/{task_id}/fetch") as resp:
                    statuses.append(resp.status)
            return statuses

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert set(first) <= {200, 500, 502, 503}
    assert len(set(first)) > 1


async def test_probabilistic_drop_rate_limit_latency(http: aiohttp.ClientSession) -> None:
    """drop=1.0 always disconnects; rate_limit=1.0 always 429; latency is scaled."""
    async with Simulator(dialect="plus", faults=Faults(drop=1.0), **FAST) as sim:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(http, sim, "/mj/task/1/fetch")
    faults = Faults(rate_limit=1.0, retry_after=2.0)
    async with (
        Simulator(dialect="plus", faults=faults, **FAST) as sim,
        http.get(sim.base_url + "/mj/task/1/fetch") as resp,
    ):
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2"
    async with Simulator(
        dialect="plus", faults=Faults(latency=(20.0, 20.0)), time_scale=0.002
    ) as sim:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await get(http, sim, "/mj/task/1/fetch")
        assert loop.time() - started >= 0.035


# -- counters, app, CLI ------------------------------------------------------------------------


async def test_counters_and_request_log(http: aiohttp.ClientSession) -> None:
    """Counters key on route templates; the log keeps bodies; reset clears both."""
    async with Simulator(dialect="plus", **FAST) as sim:
        task_id = await imagine(http, sim, "logged")
        await get(http, sim, f"/mj/task/{task_id}/fetch")
        await get(http, sim, f"/mj/task/{task_id}/fetch")
        assert sim.requests["POST /mj/submit/imagine"] == 1
        assert sim.requests["GET /mj/task/{id}/fetch"] == 2
        record = sim.request_log[0]
        assert record.route == "POST /mj/submit/imagine"
        assert record.body == {"prompt": "logged"}
        assert record.method == "POST"
        assert sim.request_log[1].path == f"/mj/task/{task_id}/fetch"
        sim.reset_counters()
        assert not sim.requests
        assert not sim.request_log


async def test_create_app_with_test_server(http: aiohttp.ClientSession) -> None:
    """create_app gives a bare Application whose state is reachable with get_state."""
    app = create_app(SimulatorConfig(dialect="oss", time_scale=0.001))
    async with TestServer(app) as server:
        async with http.post(server.make_url("/mj/submit/imagine"), json={"prompt": "x"}) as r:
            body = await r.json()
        state = get_state(app)
        assert body["result"] in state.tasks
        assert state.requests["POST /mj/submit/imagine"] == 1


async def test_many_tasks_stay_cheap(http: aiohttp.ClientSession) -> None:
    """Hundreds of concurrent tasks share one timer and all finish."""
    async with Simulator(
        dialect="plus", slots=200, queue_size=1000, time_scale=0.0005, progress_steps=2
    ) as sim:
        ids = await asyncio.gather(*(imagine(http, sim, f"p{n}") for n in range(300)))
        for task_id in ids:
            await wait_for(sim, task_id, {"SUCCESS"})
        assert sim.state.engine.running == 0


def test_config_validation() -> None:
    """Nonsense configs fail fast."""
    with pytest.raises(ValueError, match="dialect"):
        SimulatorConfig(dialect="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        Faults(drop=2.0)
    cfg = SimulatorConfig(disabled_routes={"fetch"})  # type: ignore[arg-type]
    assert cfg.disabled_routes == frozenset({"fetch"})


@pytest.mark.slow
async def test_cli_serves_and_prints_base_url(http: aiohttp.ClientSession) -> None:
    """python -m mjasync.simulator prints its base URL and answers requests."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mjasync.simulator",
        "--port",
        "0",
        "--dialect",
        "trueai",
        "--time-scale",
        "0.001",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        async with http.post(match[0] + "/mj/submit/imagine", json={"prompt": "x"}) as resp:
            assert (await resp.json())["code"] == 1
    finally:
        proc.terminate()
        await proc.wait()


async def test_notify_reorder_delays_but_delivers(http: aiohttp.ClientSession) -> None:
    """notify_reorder holds deliveries back; all of them still arrive, once each."""
    server, received = await _receiver()
    try:
        async with Simulator(
            dialect="plus", progress_steps=2, faults=Faults(notify_reorder=1.0), **FAST
        ) as sim:
            hook = str(server.make_url("/hook"))
            _, body = await post(
                http, sim, "/mj/submit/imagine", {"prompt": "c", "notifyHook": hook}
            )
            await wait_for(sim, body["result"], {"SUCCESS"})
            for _ in range(2000):
                if len(received) >= 4:
                    break
                await asyncio.sleep(0.001)
        assert sorted(r["progress"] for r in received) == ["0%", "100%", "33%", "66%"]
    finally:
        await server.close()


async def test_trueai_enable_remix_needs_remix_account(http: aiohttp.ClientSession) -> None:
    """trueai's enableRemix forces a modal, and is refused when the account has remix off."""
    for remix, code in ((False, 4), (True, 21)):
        async with Simulator(dialect="trueai", remix=remix, **FAST) as sim:
            grid = await finished(http, sim)
            custom_id = f"MJ::JOB::reroll::0::{sim.tasks[grid].message_hash}::SOLO"
            _, body = await post(
                http,
                sim,
                "/mj/submit/action",
                {"taskId": grid, "customId": custom_id, "enableRemix": True},
            )
            assert body["code"] == code


async def test_task_list_and_stats_routes() -> None:
    """GET /mj/task/list lists every task newest first with its state; /sim/stats counts."""
    async with Simulator(dialect="plus", time_scale=0.001) as sim, aiohttp.ClientSession() as http:
        for n in range(3):
            async with http.post(
                f"{sim.base_url}/mj/submit/imagine", json={"prompt": f"p{n}", "state": f"s{n}"}
            ) as response:
                assert (await response.json())["code"] in {1, 22}
        async with http.get(f"{sim.base_url}/mj/task/list") as response:
            listed = await response.json()
        assert [task["state"] for task in listed] == ["s2", "s1", "s0"]
        async with http.get(f"{sim.base_url}/sim/stats") as response:
            stats = await response.json()
        assert stats["POST /mj/submit/imagine"] == 3
        assert stats["GET /mj/task/list"] == 1
