"""Each dialect's rules as the servers' source has them (#7), spoken to in raw HTTP.

These tests treat the simulator as a server on its own: an aiohttp session, no mjasync
client. Every test names the server file whose behaviour it pins down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _shared import PNG_URI, PNG_URI_2
from _shared import SIM_FAST as FAST
from _shared import sim_reaches as wait_for

from mjasync.simulator import Simulator
from mjasync.simulator.__main__ import build_parser, config_from_args

IMAGE_URL = "https://example.com/cat.png"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test."""
    async with aiohttp.ClientSession() as session:
        yield session


class Answer:
    """Status, content type, headers and body (JSON decoded when it is JSON) of a response."""

    def __init__(self, status: int, content_type: str, headers: Any, text: str) -> None:
        self.status = status
        self.content_type = content_type
        self.headers = headers
        self.text = text
        try:
            self.json: Any = json.loads(text) if text else None
        except ValueError:
            self.json = None


async def call(
    http: aiohttp.ClientSession,
    sim: Simulator,
    method: str,
    path: str,
    body: Any = None,
    **kw: Any,
) -> Answer:
    """One raw request; ``body`` is sent as JSON unless it is ``bytes``."""
    data = {"data": body} if isinstance(body, bytes) else {"json": body}
    if body is None:
        data = {}
    async with http.request(method, sim.base_url + path, **data, **kw) as resp:
        text = (await resp.read()).decode("utf-8", "replace")
        return Answer(resp.status, resp.content_type, resp.headers, text)


async def post(http: aiohttp.ClientSession, sim: Simulator, path: str, body: Any, **kw: Any) -> Any:
    """POST and return the decoded JSON body (asserting HTTP 200)."""
    answer = await call(http, sim, "POST", path, body, **kw)
    assert answer.status == 200, (answer.status, answer.text)
    return answer.json


async def finished_grid(
    http: aiohttp.ClientSession, sim: Simulator, prompt: str = "a red fox", **kw: Any
) -> str:
    """An IMAGINE task run to SUCCESS."""
    body = await post(http, sim, "/mj/submit/imagine", {"prompt": prompt}, **kw)
    assert body["code"] in (1, 22), body
    await wait_for(sim, body["result"], {"SUCCESS"})
    return str(body["result"])


def spring_error_shape(answer: Answer, status: int, path: str) -> None:
    """Spring Boot 2.6's default error JSON (BasicErrorController)."""
    assert answer.status == status
    assert answer.content_type == "application/json"
    body = answer.json
    assert set(body) == {"timestamp", "status", "error", "path"}
    assert body["status"] == status
    assert body["path"] == path
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", body["timestamp"])


# -- OSS: novicezk v2.6.3 ------------------------------------------------------------------------


async def test_oss_change_runs_u_v_r_with_the_sources_descriptions(
    http: aiohttp.ClientSession,
) -> None:
    """SubmitController.change(): U2 / V3 / R make UPSCALE / VARIATION / REROLL tasks whose
    description is "/up <id> U2" etc., copying the parent's prompt and message ids."""
    async with Simulator(dialect="oss", **FAST) as sim:
        grid = await finished_grid(http, sim)
        parent = sim.tasks[grid]
        made = {}
        for change, description in (
            ({"action": "UPSCALE", "index": 2}, f"/up {grid} U2"),
            ({"action": "VARIATION", "index": 3}, f"/up {grid} V3"),
            ({"action": "REROLL"}, f"/up {grid} R"),
        ):
            body = await post(http, sim, "/mj/submit/change", {"taskId": grid, **change})
            assert body["code"] == 1
            assert body["description"] == "提交成功"
            made[change["action"]] = body["result"]
            assert sim.tasks[body["result"]].description == description
        for action, task_id in made.items():
            await wait_for(sim, task_id, {"SUCCESS"})
            task = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
            assert task["action"] == action
            assert task["prompt"] == "a red fox"
            assert "buttons" not in task
            assert task["properties"]["referencedMessageId"] == parent.message_id
            assert task["properties"]["progressMessageId"] == parent.message_id
        # A variation is itself a grid that can be changed again.
        body = await post(
            http,
            sim,
            "/mj/submit/change",
            {"taskId": made["VARIATION"], "action": "UPSCALE", "index": 1},
        )
        assert body["code"] == 1


async def test_oss_change_validation_and_codes(http: aiohttp.ClientSession) -> None:
    """change()'s checks in order, each with the code and text of the source."""
    async with Simulator(dialect="oss", **FAST) as sim:
        grid = await finished_grid(http, sim)
        cases = [
            ({"action": "UPSCALE", "index": 1}, 4, "taskId不能为空"),
            ({"taskId": grid, "index": 1}, 4, "action参数错误"),
            ({"taskId": grid, "action": "IMAGINE", "index": 1}, 4, "action参数错误"),
            (
                {"taskId": "1700000000000999", "action": "UPSCALE", "index": 1},
                3,
                "关联任务不存在或已失效",
            ),
        ]
        for body, code, description in cases:
            answer = await post(http, sim, "/mj/submit/change", body)
            assert (answer["code"], answer["description"], answer["result"]) == (
                code,
                description,
                None,
            )
        running = (await post(http, sim, "/mj/submit/imagine", {"prompt": "slow"}))["result"]
        sim.stall(running)
        answer = await post(
            http, sim, "/mj/submit/change", {"taskId": running, "action": "UPSCALE", "index": 1}
        )
        assert (answer["code"], answer["description"]) == (4, "关联任务状态错误")
        upscale = (
            await post(
                http, sim, "/mj/submit/change", {"taskId": grid, "action": "UPSCALE", "index": 4}
            )
        )["result"]
        await wait_for(sim, upscale, {"SUCCESS"})
        answer = await post(
            http, sim, "/mj/submit/change", {"taskId": upscale, "action": "VARIATION", "index": 1}
        )
        assert (answer["code"], answer["description"]) == (4, "关联任务不允许执行变化")
        # Jackson cannot bind an unknown enum name: Spring's 400, not a business code.
        answer = await call(
            http, sim, "POST", "/mj/submit/change", {"taskId": grid, "action": "ZOOM", "index": 1}
        )
        spring_error_shape(answer, 400, "/mj/submit/change")
        # U without an index: the int parameter cannot be unboxed -> Spring's 500.
        answer = await call(
            http, sim, "POST", "/mj/submit/change", {"taskId": grid, "action": "UPSCALE"}
        )
        spring_error_shape(answer, 500, "/mj/submit/change")
        assert answer.json["error"] == "Internal Server Error"
        # Jackson takes a numeric string for the index and an enum ordinal for the action.
        answer = await call(
            http, sim, "POST", "/mj/submit/change", {"taskId": grid, "action": 1, "index": "3"}
        )
        assert answer.json["code"] == 1
        assert sim.tasks[answer.json["result"]].description == f"/up {grid} U3"
        # The index is never checked: U5 is accepted and fails when Discord refuses it.
        answer = await post(
            http, sim, "/mj/submit/change", {"taskId": grid, "action": "UPSCALE", "index": 5}
        )
        assert answer["code"] == 1
        await wait_for(sim, answer["result"], {"FAILURE"})
        task = (await call(http, sim, "GET", f"/mj/task/{answer['result']}/fetch")).json
        assert task["failReason"] == "Invalid Form Body"
        assert task["progress"] == ""


async def test_oss_simple_change(http: aiohttp.ClientSession) -> None:
    """ConvertUtils.convertChangeParams: "<id> U2", "<id> v1", "<id> r"; anything else code 4."""
    async with Simulator(dialect="oss", **FAST) as sim:
        grid = await finished_grid(http, sim)
        for content, description in (
            (f"{grid} U2", f"/up {grid} U2"),
            (f"{grid} v1", f"/up {grid} V1"),
            (f"{grid} R", f"/up {grid} R"),
            (f"{grid} u34", f"/up {grid} U3"),  # only the second character counts
        ):
            body = await post(
                http, sim, "/mj/submit/simple-change", {"content": content, "state": "s"}
            )
            assert body["code"] == 1, content
            assert sim.tasks[body["result"]].description == description
            assert sim.tasks[body["result"]].state == "s"
        for content in (f"{grid} U5", f"{grid}  U2", f"{grid} x1", grid, f"{grid} U", None):
            body = await post(http, sim, "/mj/submit/simple-change", {"content": content})
            assert (body["code"], body["description"]) == (4, "content参数错误"), content
        answer = await call(http, sim, "POST", "/mj/submit/simple-change", {"content": f"{grid} "})
        spring_error_shape(answer, 500, "/mj/submit/simple-change")


async def test_oss_repeated_upscale_per_version(http: aiohttp.ClientSession) -> None:
    """v2.6.3 starts another upscale; before b146e94 (oss_task_exists) a repeated U of the same
    image answers code 21 "任务已存在" with the existing task, never a MODAL task."""
    async with Simulator(dialect="oss", **FAST) as sim:
        grid = await finished_grid(http, sim)
        change = {"taskId": grid, "action": "UPSCALE", "index": 2}
        first = await post(http, sim, "/mj/submit/change", change)
        again = await post(http, sim, "/mj/submit/change", change)
        assert (first["code"], again["code"]) == (1, 1)
        assert first["result"] != again["result"]
    async with Simulator(dialect="oss", oss_task_exists=True, **FAST) as sim:
        grid = await finished_grid(http, sim)
        change = {"taskId": grid, "action": "UPSCALE", "index": 2}
        first = await post(http, sim, "/mj/submit/change", change)
        running = await post(http, sim, "/mj/submit/simple-change", {"content": f"{grid} U2"})
        assert (running["code"], running["description"]) == (21, "任务已存在")
        assert running["result"] == first["result"]
        assert set(running["properties"]) == {"status", "imageUrl"}
        assert running["properties"]["status"] in {"NOT_START", "SUBMITTED", "IN_PROGRESS"}
        await wait_for(sim, first["result"], {"SUCCESS"})
        done = await post(http, sim, "/mj/submit/change", change)
        assert done["code"] == 21
        assert done["result"] == first["result"]
        assert done["properties"]["status"] == "SUCCESS"
        assert done["properties"]["imageUrl"].endswith(f"/sim/images/{first['result']}.png")
        assert len(sim.tasks) == 2
        assert all(t.status != "MODAL" for t in sim.tasks.values())
        # Other indexes and variations are new tasks.
        assert (await post(http, sim, "/mj/submit/change", {**change, "index": 3}))["code"] == 1
        variation = {"taskId": grid, "action": "VARIATION", "index": 2}
        assert (await post(http, sim, "/mj/submit/change", variation))["code"] == 1


async def test_oss_answers_like_spring_for_routes_it_lacks(http: aiohttp.ClientSession) -> None:
    """No action/modal/shorten/seed/cancel/list-by-ids: Spring's 404 JSON; a wrong method on a
    known path: 405 with Allow; outside the /mj context: Tomcat's own 404 page."""
    async with Simulator(dialect="oss", api_key="k", **FAST) as sim:
        key = {"mj-api-secret": "k"}
        for method, path in (
            ("POST", "/mj/submit/action"),
            ("POST", "/mj/submit/modal"),
            ("POST", "/mj/submit/shorten"),
            ("POST", "/mj/submit/upload-discord-images"),
            ("GET", "/mj/task/1700000000000999/image-seed"),
            ("POST", "/mj/task/1700000000000999/cancel"),
            ("POST", "/mj/task/list-by-ids"),
        ):
            answer = await call(http, sim, method, path, {}, headers=key)
            spring_error_shape(answer, 404, path)
            assert answer.json["error"] == "Not Found"
            # The interceptor guards /submit/** and /task/**, unknown paths included.
            answer = await call(http, sim, method, path, {})
            assert (answer.status, answer.text) == (401, "")
        answer = await call(http, sim, "GET", "/mj/submit/imagine")
        spring_error_shape(answer, 405, "/mj/submit/imagine")  # no key: 405 comes first
        assert answer.headers["Allow"] == "POST"
        answer = await call(http, sim, "POST", "/mj/task/1/fetch", {}, headers=key)
        spring_error_shape(answer, 405, "/mj/task/1/fetch")
        answer = await call(http, sim, "POST", "/mj-fast/mj/submit/imagine", {"prompt": "x"})
        assert (answer.status, answer.content_type) == (404, "text/html")
        assert "HTTP Status 404" in answer.text
        browser = {**key, "Accept": "text/html"}
        answer = await call(http, sim, "POST", "/mj/submit/action", {}, headers=browser)
        assert (answer.status, answer.content_type) == (404, "text/html")
        assert "Whitelabel Error Page" in answer.text
        # Unreadable bodies are Spring's 400 too.
        answer = await call(http, sim, "POST", "/mj/submit/imagine", b"{nope", headers=key)
        spring_error_shape(answer, 400, "/mj/submit/imagine")
        answer = await call(http, sim, "POST", "/mj/submit/imagine", b"", headers=key)
        spring_error_shape(answer, 400, "/mj/submit/imagine")
        # And the routes it has still work.
        answer = await call(http, sim, "GET", "/mj/task/queue", headers=key)
        assert (answer.status, answer.json) == (200, [])


async def test_oss_task_json_fills_in_as_the_task_runs(http: aiohttp.ClientSession) -> None:
    """support/Task.java: no buttons ever; progress null and no message ids before the start;
    describe: "/describe <id>.png", then the four prompts as prompt and promptEn."""
    async with Simulator(dialect="oss", time_scale=1.0) as sim:
        body = await post(
            http, sim, "/mj/submit/imagine", {"prompt": "x", "notifyHook": "http://127.0.0.1:9/h"}
        )
        task = (await call(http, sim, "GET", f"/mj/task/{body['result']}/fetch")).json
        assert task["status"] == "NOT_START"
        assert task["progress"] is None
        assert "buttons" not in task
        assert set(task["properties"]) == {"notifyHook", "nonce", "discordInstanceId"}
        assert task["properties"]["notifyHook"] == "http://127.0.0.1:9/h"
        queue = (await call(http, sim, "GET", "/mj/task/queue")).json
        assert [t["id"] for t in queue] == [body["result"]]
    async with Simulator(dialect="oss", **FAST) as sim:
        body = await post(http, sim, "/mj/submit/describe", {"base64": PNG_URI})
        task_id = body["result"]
        assert sim.tasks[task_id].description == f"/describe {task_id}.png"
        task = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert task["prompt"] is None
        await wait_for(sim, task_id, {"SUCCESS"})
        task = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert task["prompt"] == task["promptEn"] == task["properties"]["finalPrompt"]
        assert task["prompt"].startswith("1️⃣ ")
        assert {"messageId", "messageHash", "flags"} <= set(task["properties"])
        assert (await post(http, sim, "/mj/submit/describe", {"base64": ""}))["description"] == (
            "base64不能为空"
        )


# -- new-api --------------------------------------------------------------------------------------


async def test_newapi_passes_upstream_answers_through(http: aiohttp.ClientSession) -> None:
    """mjproxy_handler.go RelayMidjourneySubmit: the upstream's body and status, "code":22 and
    (but for INPAINT/CUSTOM_ZOOM) "code":21 rewritten to 1, with a sniffed text/plain type."""
    async with Simulator(
        dialect="newapi", slots=1, queue_size=1, remix=True, newapi_sync_interval=0, **FAST
    ) as sim:
        first = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "one"})
        assert first.content_type == "text/plain"
        assert first.json["description"] == "提交成功"
        queued = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "two"})
        assert queued.json["code"] == 1
        assert queued.json["description"] == "排队中，前面还有1个任务"
        assert queued.json["properties"]["numberOfQueues"] == 1
        full = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "three"})
        assert (full.status, full.json["code"]) == (200, 23)
        banned = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "gore"})
        assert (banned.status, banned.json["code"]) == (200, 24)
        assert banned.json["properties"]["bannedWord"] == "gore"
        await wait_for(sim, first.json["result"], {"SUCCESS"})
        grid = first.json["result"]
        h = sim.tasks[grid].message_hash
        remix = await call(
            http,
            sim,
            "POST",
            "/mj/submit/action",
            {"taskId": grid, "customId": f"MJ::JOB::variation::1::{h}"},
        )
        assert remix.json["code"] == 1  # a 21 rewritten: the task waits in MODAL
        assert remix.json["description"] == "Waiting for window confirm"
        assert sim.tasks[remix.json["result"]].status == "MODAL"
        view = (await call(http, sim, "GET", f"/mj/task/{remix.json['result']}/fetch")).json
        assert (view["status"], view["action"]) == ("MODAL", "VARIATION")


async def test_newapi_serves_its_web_page_for_routes_it_lacks(http: aiohttp.ClientSession) -> None:
    """router/web-router.go NoRoute: HTTP 200 text/html, no key needed; /v1, /api, /assets get
    RelayNotFound's 404 JSON."""
    async with Simulator(dialect="newapi", api_key="k", **FAST) as sim:
        for method, path in (
            ("POST", "/mj/task/1700000000000999/cancel"),
            ("POST", "/mj/task/list-by-ids"),
            ("GET", "/mj/task/list"),
            ("GET", "/mj/submit/imagine"),
            ("POST", "/mj/submit/retexture"),
            ("GET", "/anything"),
        ):
            answer = await call(http, sim, method, path, {} if method == "POST" else None)
            assert (answer.status, answer.content_type) == (200, "text/html"), path
            assert answer.text.startswith("<!doctype html>")
        answer = await call(http, sim, "GET", "/v1/nope")
        assert answer.status == 404
        assert answer.json == {
            "error": {
                "message": "Invalid URL (GET /v1/nope)",
                "type": "invalid_request_error",
                "param": "",
                "code": "",
            }
        }


@pytest.mark.parametrize(
    "custom_id",
    [
        "MJ::Job::PicReader::1",
        "MJ::Job::PicReader::all",
        "MJ::Job::PromptAnalyzer::2",
        "MJ::Picread::Retry",
        "MJ::JOB::video_virtual_upscale::1::h",
        "MJ::JOB::animate_low::1::h::SOLO",
        "MJ::BOOKMARK::h",
    ],
)
async def test_newapi_distributor_refuses_customids_it_cannot_map(
    http: aiohttp.ClientSession, custom_id: str
) -> None:
    """distributor.go + service/midjourney.go CoverPlusActionToNormalAction: HTTP 400
    "Invalid request: unknown_action:<customId>" before any task lookup."""
    async with Simulator(dialect="newapi", **FAST) as sim:
        body = {"taskId": "1700000000000999", "customId": custom_id}
        answer = await call(http, sim, "POST", "/mj/submit/action", body)
        assert answer.status == 400
        error = answer.json["error"]
        assert set(error) == {"code", "message", "type"}
        assert (error["type"], error["code"]) == ("new_api_error", "")
        request_id = answer.headers["X-Oneapi-Request-Id"]
        assert error["message"] == (
            f"Invalid request: unknown_action:{custom_id} (request id: {request_id})"
        )
        zh = await call(
            http, sim, "POST", "/mj/submit/action", body, headers={"Accept-Language": "zh-CN"}
        )
        assert zh.json["error"]["message"].startswith(f"无效的请求，unknown_action:{custom_id}")
        assert not sim.tasks


async def test_newapi_own_errors(http: aiohttp.ClientSession) -> None:
    """mjproxy_handler.go: task_not_found / task_status_not_success / index_is_required /
    prompt_is_required as 400 {code, description, type}; customId gaps and Go panics."""
    async with Simulator(dialect="newapi", newapi_sync_interval=0, **FAST) as sim:
        not_found = {"code": 4, "description": "task_not_found ", "type": "upstream_error"}
        unknown = "1700000000000999"
        for path, body in (
            ("/mj/submit/action", {"taskId": unknown, "customId": "MJ::JOB::upsample::1::h"}),
            ("/mj/submit/modal", {"taskId": unknown, "prompt": "x"}),
            ("/mj/submit/change", {"taskId": unknown, "action": "UPSCALE", "index": 1}),
            ("/mj/submit/simple-change", {"content": f"{unknown} U1"}),
            ("/mj/submit/video", {"taskId": unknown, "action": "extend", "prompt": "x"}),
        ):
            answer = await call(http, sim, "POST", path, body)
            assert (answer.status, answer.json) == (400, not_found), path
        answer = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": ""})
        assert answer.json["description"] == "prompt_is_required "
        running = (await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"})).json
        sim.stall(running["result"])
        answer = await call(
            http,
            sim,
            "POST",
            "/mj/submit/change",
            {"taskId": running["result"], "action": "UPSCALE", "index": 1},
        )
        assert answer.json["description"] == "task_status_not_success "
        answer = await call(
            http,
            sim,
            "POST",
            "/mj/submit/change",
            {"taskId": running["result"], "action": "REROLL"},
        )
        assert answer.json["description"] == "index_is_required "  # even for REROLL
        answer = await call(http, sim, "POST", "/mj/submit/action", {"taskId": "1", "customId": ""})
        assert "custom_id_is_required" in answer.json["error"]["message"]
        answer = await call(
            http, sim, "POST", "/mj/submit/action", {"taskId": "1", "customId": "x"}
        )
        assert answer.status == 500
        assert answer.json["error"]["type"] == "new_api_panic"
        answer = await call(http, sim, "POST", "/mj/submit/simple-change", {"content": "1 x1"})
        assert "Invalid request: invalid_request" in answer.json["error"]["message"]
        answer = await call(
            http, sim, "POST", "/mj/submit/change", {"taskId": "1", "action": "ZOOM2"}
        )
        assert answer.status == 503
        assert answer.json["error"]["code"] == "model_not_found"
        answer = await call(http, sim, "POST", "/mj/insight-face/swap", {"sourceBase64": PNG_URI})
        assert answer.json["description"] == "sour_base64_and_target_base64_is_required "
        answer = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": 5})
        assert answer.status == 400
        assert "Invalid Midjourney request: json: cannot unmarshal number" in answer.text
    async with Simulator(
        dialect="newapi", newapi_sync_interval=0, newapi_action_check_success=False, **FAST
    ) as sim:
        running = (await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"})).json
        sim.stall(running["result"])
        body = {"taskId": running["result"], "action": "UPSCALE", "index": 1}
        answer = await call(http, sim, "POST", "/mj/submit/change", body)
        # Forwarded: the upstream's own refusal comes back as sent.
        assert (answer.status, answer.json["code"]) == (200, 4)
        assert answer.json["description"] == "关联任务状态错误"


async def test_newapi_drops_what_the_operator_did_not_enable(http: aiohttp.ClientSession) -> None:
    """service/midjourney.go DoMidjourneyHttpRequest: accountFilter and notifyHook are deleted
    unless MjAccountFilterEnabled / MjNotifyEnabled; MjModeClearEnabled strips --fast/--relax/
    --turbo; getMjRequestPath removes the /mj-<mode> prefix (any /:mode is routed)."""
    body = {
        "prompt": "a cat --turbo",
        "accountFilter": {"modes": ["RELAX"]},
        "notifyHook": "http://127.0.0.1:9/hook",
    }
    async with Simulator(dialect="newapi", newapi_sync_interval=0, **FAST) as sim:
        answer = await call(http, sim, "POST", "/mj-relax/mj/submit/imagine", body)
        task = sim.tasks[answer.json["result"]]
        assert (task.account_filter, task.notify_hook, task.mode) == (None, None, "TURBO")
        assert task.prompt == "a cat --turbo"
        answer = await call(http, sim, "POST", "/anything/mj/submit/imagine", {"prompt": "x"})
        assert answer.json["code"] == 1
    async with Simulator(
        dialect="newapi",
        newapi_sync_interval=0,
        newapi_account_filter=True,
        newapi_notify=True,
        newapi_mode_clear=True,
        **FAST,
    ) as sim:
        answer = await call(http, sim, "POST", "/mj-fast/mj/submit/imagine", body)
        task_id = answer.json["result"]
        task = sim.tasks[task_id]
        assert task.account_filter == {"modes": ["RELAX"]}
        assert task.notify_hook == "http://127.0.0.1:9/hook"
        assert task.mode == "RELAX"  # accountFilter, not the prefix new-api removed
        assert task.prompt == "a cat"  # "a cat " as forwarded, trimmed by the upstream
        view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert view["prompt"] == "a cat --turbo"  # new-api records the request's prompt
        assert view["promptEn"] == "a cat"  # and the upstream's after its sync


async def test_newapi_copy_lags_the_upstream(http: aiohttp.ClientSession) -> None:
    """controller/midjourney.go UpdateMidjourneyTaskBulk: new-api's copy changes only when it
    polls the upstream; before that it shows status "", no buttons, no properties."""
    async with Simulator(dialect="newapi", newapi_sync_interval=1e9, **FAST) as sim:
        answer = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x", "state": "s"})
        task_id = answer.json["result"]
        sim.complete(task_id)
        view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert (view["status"], view["progress"], view["state"]) == ("", "0%", "")
        assert (view["buttons"], view["properties"], view["imageUrl"]) == (None, None, "")
        assert view["description"] == "提交成功"
        sim.state.newapi.sync()
        view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert (view["status"], view["progress"], view["state"]) == ("SUCCESS", "100%", "s")
        assert len(view["buttons"]) == 9
        listed = await call(
            http, sim, "POST", "/mj/task/list-by-condition", {"ids": [task_id, "1"]}
        )
        assert [t["status"] for t in listed.json] == ["SUCCESS"]
    # The real poller: every newapi_sync_interval simulated seconds.
    async with Simulator(dialect="newapi", newapi_sync_interval=20, time_scale=0.005) as sim:
        task_id = (await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"})).json[
            "result"
        ]
        sim.complete(task_id)
        assert (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json["status"] == ""
        for _ in range(400):
            view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
            if view["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.005)
        assert view["status"] == "SUCCESS"


async def test_newapi_fails_what_runs_over_an_hour(http: aiohttp.ClientSession) -> None:
    """UpdateMidjourneyTaskBulk: not 100% an hour after submit -> FAILURE with its reason."""
    async with Simulator(dialect="newapi", newapi_sync_interval=300, time_scale=0.00002) as sim:
        sim.inject("imagine", "stuck")
        task_id = (await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"})).json[
            "result"
        ]
        for _ in range(400):
            view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
            if view["status"] == "FAILURE":
                break
            await asyncio.sleep(0.005)
        assert (view["status"], view["progress"]) == ("FAILURE", "100%")
        assert view["failReason"] == "上游任务超时（超过1小时）"
        assert sim.tasks[task_id].status == "IN_PROGRESS"  # the upstream still runs it


async def test_newapi_auth_and_image_forwarding(http: aiohttp.ClientSession) -> None:
    """auth.go TokenAuth's 401; MjForwardUrlEnabled links /mj/image/{id}, served without a key
    (RelayMidjourneyImage)."""
    async with Simulator(dialect="newapi", api_key="sk-k", newapi_sync_interval=0, **FAST) as sim:
        for headers in ({}, {"Authorization": "Bearer x"}, {"mj-api-secret": "kk"}):
            answer = await call(
                http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"}, headers=headers
            )
            assert answer.status == 401
            assert answer.json["error"]["type"] == "new_api_error"
            assert answer.json["error"]["message"].startswith("Invalid token (request id: ")
        answer = await call(
            http,
            sim,
            "GET",
            "/mj/task/1/fetch",
            headers={"Authorization": "x", "Accept-Language": "zh-CN,zh;q=0.9"},
        )
        assert answer.json["error"]["message"].startswith("无效的令牌")
        for headers in (
            {"Authorization": "Bearer sk-k"},
            {"Authorization": "k"},
            {"Authorization": "midjourney-proxy", "mj-api-secret": "sk-k"},
            {"Authorization": "Bearer k-7"},  # "-7" picks a channel
        ):
            answer = await call(
                http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"}, headers=headers
            )
            assert answer.status == 200, headers
        key = {"Authorization": "Bearer sk-k"}
        task_id = answer.json["result"]
        await wait_for(sim, task_id, {"SUCCESS"})
        view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch", headers=key)).json
        assert view["imageUrl"] == f"{sim.base_url}/mj/image/{task_id}"
        image = await call(http, sim, "GET", f"/mj/image/{task_id}")
        assert (image.status, image.content_type) == (200, "image/png")
        answer = await call(http, sim, "GET", "/mj/image/1")
        assert (answer.status, answer.json) == (400, {"error": "midjourney_task_not_found"})
    async with Simulator(
        dialect="newapi", newapi_forward_url=False, newapi_sync_interval=0, **FAST
    ) as sim:
        task_id = await finished_grid(http, sim)
        view = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert view["imageUrl"].endswith(f"/sim/images/{task_id}.png")


async def test_newapi_swap_face_is_reencoded(http: aiohttp.ClientSession) -> None:
    """RelaySwapFace writes the decoded answer back in MidjourneyResponse's field order."""
    async with Simulator(dialect="newapi", newapi_sync_interval=0, **FAST) as sim:
        answer = await call(
            http,
            sim,
            "POST",
            "/mj/insight-face/swap",
            {"sourceBase64": PNG_URI, "targetBase64": PNG_URI_2},
        )
        assert list(answer.json) == ["code", "description", "properties", "result"]
        view = (await call(http, sim, "GET", f"/mj/task/{answer.json['result']}/fetch")).json
        assert (view["action"], view["prompt"]) == ("SWAP_FACE", "InsightFace")


# -- trueai 11.10.x -------------------------------------------------------------------------------


async def test_trueai_action_whitelist(http: aiohttp.ClientSession) -> None:
    """SubmitController.cs Action(): PromptAnalyzer and BOOKMARK are "未知的 Action 类型" (code 4,
    HTTP 200) after the parent checks; a reroll of an UPSCALE is an IMAGINE."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        answer = await call(
            http, sim, "POST", "/mj/submit/action", {"taskId": "", "customId": "MJ::BOOKMARK::h"}
        )
        assert answer.json["description"] == "参数错误"
        answer = await call(
            http, sim, "POST", "/mj/submit/action", {"taskId": "9", "customId": "MJ::BOOKMARK::h"}
        )
        assert (answer.status, answer.json["code"]) == (404, 3)
        shorten = (await post(http, sim, "/mj/submit/shorten", {"prompt": "a long prompt"}))[
            "result"
        ]
        await wait_for(sim, shorten, {"SUCCESS"})
        for custom_id in (
            "MJ::Job::PromptAnalyzer::1",
            "MJ::BOOKMARK::abc",
            "MJ::JOB::video::1::x::manual",
        ):
            body = await post(
                http, sim, "/mj/submit/action", {"taskId": shorten, "customId": custom_id}
            )
            assert (body["code"], body["description"]) == (4, "未知的 Action 类型"), custom_id
        grid = await finished_grid(http, sim)
        h = sim.tasks[grid].message_hash
        up = (
            await post(
                http,
                sim,
                "/mj/submit/action",
                {"taskId": grid, "customId": f"MJ::JOB::upsample::1::{h}"},
            )
        )["result"]
        await wait_for(sim, up, {"SUCCESS"})
        reroll = f"MJ::JOB::reroll::0::{sim.tasks[up].message_hash}::SOLO"
        body = await post(http, sim, "/mj/submit/action", {"taskId": up, "customId": reroll})
        assert body["code"] == 1
        assert sim.tasks[body["result"]].action == "IMAGINE"
        # A whitelisted id the message lacks is accepted; Discord refuses it at the start.
        body = await post(
            http, sim, "/mj/submit/action", {"taskId": grid, "customId": "MJ::JOB::upsample::3::zz"}
        )
        assert body["code"] == 1
        await wait_for(sim, body["result"], {"FAILURE"})


async def test_trueai_cancel_is_for_admins(http: aiohttp.ClientSession) -> None:
    """TaskController.cs Cancel: a non-admin (user key or guest) gets 400 "演示模式，禁止操作" as
    text; an admin always gets an empty 200, and only a live task turns FAILURE "取消任务"."""
    async with Simulator(
        dialect="trueai", api_key="admin", trueai_user_keys={"user"}, time_scale=1.0
    ) as sim:
        admin, user = {"Authorization": "admin"}, {"Authorization": "user"}
        task_id = (await post(http, sim, "/mj/submit/imagine", {"prompt": "x"}, headers=user))[
            "result"
        ]
        answer = await call(http, sim, "POST", f"/mj/task/{task_id}/cancel", headers=user)
        assert (answer.status, answer.content_type, answer.text) == (
            400,
            "text/plain",
            "演示模式，禁止操作",
        )
        answer = await call(
            http,
            sim,
            "POST",
            f"/mj/task/{task_id}/cancel",
            headers={**user, "Accept": "application/json"},
        )
        assert (answer.status, answer.json) == (400, "演示模式，禁止操作")
        assert sim.tasks[task_id].status == "NOT_START"
        answer = await call(http, sim, "POST", "/mj/task/1700000000000999/cancel", headers=admin)
        assert (answer.status, answer.text) == (200, "")
        answer = await call(http, sim, "POST", f"/mj/task/{task_id}/cancel", headers=admin)
        assert (answer.status, answer.text) == (200, "")
        assert (sim.tasks[task_id].status, sim.tasks[task_id].fail_reason) == (
            "FAILURE",
            "取消任务",
        )
        answer = await call(http, sim, "POST", f"/mj/task/{task_id}/cancel", headers=admin)
        assert (answer.status, sim.tasks[task_id].fail_reason) == (200, "取消任务")
    async with Simulator(dialect="trueai", **FAST) as sim:  # no keys: every caller is a guest
        answer = await call(http, sim, "POST", "/mj/task/1/cancel")
        assert (answer.status, answer.text) == (400, "演示模式，禁止操作")


async def test_trueai_video_urls(http: aiohttp.ClientSession) -> None:
    """TaskInfo.cs: a VIDEO task's imageUrl is the video; videoUrl and videoUrls ({url,
    thumbnail}, one per video) and imageUrls come only with EnableFillOfficialCdn."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        task_id = (
            await post(http, sim, "/mj/submit/video", {"prompt": "waves", "image": IMAGE_URL})
        )["result"]
        await wait_for(sim, task_id, {"SUCCESS"})
        task = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        assert task["imageUrl"].endswith(f"/sim/videos/{task_id}.mp4")
        assert (task["videoUrl"], task["videoUrls"], task["imageUrls"]) == (None, None, None)
    async with Simulator(dialect="trueai", trueai_fill_official_cdn=True, **FAST) as sim:
        video = (
            await post(http, sim, "/mj/submit/video", {"prompt": "waves --bs 2", "image": PNG_URI})
        )["result"]
        grid = await finished_grid(http, sim)
        await wait_for(sim, video, {"SUCCESS"})
        task = (await call(http, sim, "GET", f"/mj/task/{video}/fetch")).json
        assert task["videoUrl"] == task["imageUrl"]
        assert len(task["videoUrls"]) == 2
        assert task["imageUrls"] == task["videoUrls"]
        for item in task["videoUrls"]:
            assert set(item) == {"url", "thumbnail"}
            clip = await call(http, sim, "GET", item["url"][len(sim.base_url) :])
            assert (clip.status, clip.content_type) == (200, "video/mp4")
        task = (await call(http, sim, "GET", f"/mj/task/{grid}/fetch")).json
        assert len(task["imageUrls"]) == 4
        assert task["videoUrls"] is None
        picture = await call(http, sim, "GET", task["imageUrls"][3]["url"][len(sim.base_url) :])
        assert picture.content_type == "image/png"


async def test_trueai_user_caps(http: aiohttp.ClientSession) -> None:
    """SubmitController.cs NewTask: "并发数已达上限" / "队列数已达上限" — code 4 on /imagine (it
    catches LogicException), Result.Fail JSON on the other routes."""
    async with Simulator(
        dialect="trueai", trueai_user_core_size=1, slots=3, time_scale=0.01
    ) as sim:
        first = (await post(http, sim, "/mj/submit/imagine", {"prompt": "a"}))["result"]
        await wait_for(sim, first, {"IN_PROGRESS"})
        body = await post(http, sim, "/mj/submit/imagine", {"prompt": "b"})
        assert (body["code"], body["description"], body["result"]) == (4, "并发数已达上限", None)
        body = await post(http, sim, "/mj/submit/blend", {"base64Array": [PNG_URI, PNG_URI_2]})
        assert set(body) == {"success", "code", "message", "timestamp"}
        assert (body["success"], body["code"], body["message"]) == (False, -1, "并发数已达上限")
        assert body["timestamp"].isdigit()
        sim.complete(first)
        assert (await post(http, sim, "/mj/submit/imagine", {"prompt": "c"}))["code"] == 1
    async with Simulator(dialect="trueai", trueai_user_queue_size=1, time_scale=1.0) as sim:
        assert (await post(http, sim, "/mj/submit/imagine", {"prompt": "a"}))["code"] == 1
        body = await post(http, sim, "/mj/submit/imagine", {"prompt": "b"})
        assert body["description"] == "队列数已达上限"
        # NewTask checks the state's length before the caps.
        body = await post(http, sim, "/mj/submit/imagine", {"prompt": "c", "state": "s" * 256})
        assert body["description"] == "State参数过长，最大255字符"


async def test_trueai_ip_rate_limits(http: aiohttp.ClientSession) -> None:
    """RateLimitingMiddleware.cs: over a rule 429, empty; the black-list rule 403, empty, and
    the IP stays blocked on every path; admins pass."""
    async with Simulator(
        dialect="trueai",
        api_key="admin",
        trueai_user_keys={"user"},
        trueai_ip_rate_limit=[("*/mj/submit/*", 1000.0, 2)],
        time_scale=0.001,
    ) as sim:
        user = {"Authorization": "user"}
        for _ in range(2):
            await post(http, sim, "/mj/submit/imagine", {"prompt": "x"}, headers=user)
        answer = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"}, headers=user)
        assert (answer.status, answer.text) == (429, "")
        assert (await call(http, sim, "GET", "/mj/task/1/fetch", headers=user)).status == 204
        for _ in range(3):
            await post(
                http, sim, "/mj/submit/imagine", {"prompt": "x"}, headers={"Authorization": "admin"}
            )
    async with Simulator(
        dialect="trueai",
        trueai_ip_black_rate_limit=[("*/mj/submit/*", 1000.0, 1)],
        time_scale=0.001,
    ) as sim:
        await post(http, sim, "/mj/submit/imagine", {"prompt": "x"})
        answer = await call(http, sim, "POST", "/mj/submit/imagine", {"prompt": "x"})
        assert (answer.status, answer.text) == (403, "")
        assert (await call(http, sim, "GET", "/mj/task/1/fetch")).status == 403


async def test_trueai_urls_and_base64_uploads(http: aiohttp.ClientSession) -> None:
    """trueai takes describe ``link``, face swap ``sourceUrl``/``targetUrl`` and http video
    images; with EnableUserCustomUploadBase64 off, each route refuses base64 its own way."""
    async with Simulator(dialect="trueai", **FAST) as sim:
        body = await post(http, sim, "/mj/submit/describe", {"link": IMAGE_URL})
        assert sim.tasks[body["result"]].image_url == IMAGE_URL
        assert sim.tasks[body["result"]].description == "/describe"
        body = await post(http, sim, "/mj/submit/describe", {"link": "ftp://x/y.png"})
        assert (body["code"], body["description"]) == (4, "链接格式错误")
        body = await post(http, sim, "/mj/submit/describe", {})
        assert body["description"] == "base64或link不能为空"
        swap = {"sourceUrl": IMAGE_URL, "targetUrl": "https://example.com/b.png"}
        assert (await post(http, sim, "/mj/insight-face/swap", swap))["code"] in {1, 22}
        body = await post(
            http, sim, "/mj/insight-face/swap", {"sourceUrl": IMAGE_URL, "targetUrl": IMAGE_URL}
        )
        assert body["description"] == "人脸图片和目标图片不能相同"
        body = await post(http, sim, "/mj/insight-face/swap", {"sourceUrl": IMAGE_URL})
        assert body["description"] == "目标图片不能为空"
        video = {"prompt": "waves", "image": IMAGE_URL, "endImage": "http://example.com/e.png"}
        assert (await post(http, sim, "/mj/submit/video", video))["code"] in {1, 22}
        bare = base64.b64encode(b"\x89PNG\r\n\x1a\nbare").decode()  # assumed image/png
        assert (
            await post(http, sim, "/mj/submit/imagine", {"prompt": "x", "base64Array": [bare]})
        )["code"] in {1, 22}
    async with Simulator(dialect="trueai", trueai_upload_base64=False, **FAST) as sim:
        refusals = [
            ("/mj/submit/imagine", {"prompt": "x", "base64Array": [PNG_URI]}, "禁止上传"),
            ("/mj/submit/imagine", {"prompt": "x", "base64Array": [IMAGE_URL]}, "禁止上传"),
            ("/mj/submit/describe", {"base64": PNG_URI}, "禁止上传"),
            ("/mj/submit/upload-discord-images", {"base64Array": [IMAGE_URL]}, "禁止上传"),
            ("/mj/submit/edits", {"prompt": "x", "image": IMAGE_URL}, "禁止上传"),
            ("/mj/submit/blend", {"base64Array": [PNG_URI, PNG_URI_2]}, "base64格式错误"),
            ("/mj/submit/video", {"prompt": "x", "image": PNG_URI}, "base64格式错误"),
            (
                "/mj/insight-face/swap",
                {"sourceBase64": PNG_URI, "targetUrl": IMAGE_URL},
                "人脸图片格式错误",
            ),
        ]
        for path, body, description in refusals:
            answer = await post(http, sim, path, body)
            assert (answer["code"], answer["description"]) == (4, description), path
        accepted = [
            ("/mj/submit/describe", {"link": IMAGE_URL}),
            ("/mj/submit/blend", {"base64Array": [IMAGE_URL, "https://example.com/b.png"]}),
            ("/mj/submit/video", {"prompt": "x", "image": IMAGE_URL}),
            ("/mj/insight-face/swap", {"sourceUrl": IMAGE_URL, "targetUrl": "https://e.com/b.png"}),
        ]
        for path, body in accepted:
            assert (await post(http, sim, path, body))["code"] in {1, 22}, path


# -- PLUS -----------------------------------------------------------------------------------------


async def test_plus_describe_has_no_imagine_all(http: aiohttp.ClientSession) -> None:
    """PLUS offers PicReader 1..4 and Retry on a describe result, no "Imagine all"."""
    async with Simulator(dialect="plus", **FAST) as sim:
        task_id = (await post(http, sim, "/mj/submit/describe", {"base64": PNG_URI}))["result"]
        await wait_for(sim, task_id, {"SUCCESS"})
        task = (await call(http, sim, "GET", f"/mj/task/{task_id}/fetch")).json
        ids = [b["customId"] for b in task["buttons"]]
        assert ids == [*(f"MJ::Job::PicReader::{i}" for i in range(1, 5)), "MJ::Picread::Retry"]
        body = await post(
            http,
            sim,
            "/mj/submit/action",
            {"taskId": task_id, "customId": "MJ::Job::PicReader::all"},
        )
        assert body["code"] == 4


# -- configuration ---------------------------------------------------------------------------------


def test_cli_flags_build_the_dialect_settings() -> None:
    """``python -m mjasync.simulator`` flags map onto the new settings."""
    args = build_parser().parse_args(
        [
            "--dialect",
            "trueai",
            "--oss-task-exists",
            "--newapi-notify",
            "--newapi-account-filter",
            "--newapi-mode-clear",
            "--no-newapi-forward-url",
            "--newapi-sync-interval",
            "2.5",
            "--trueai-user-key",
            "u1",
            "--trueai-user-key",
            "u2",
            "--trueai-no-upload-base64",
            "--trueai-fill-official-cdn",
            "--trueai-user-core-size",
            "2",
            "--trueai-user-queue-size",
            "3",
            "--trueai-rate-limit",
            "*/mj/submit/*:3:1",
            "--trueai-black-rate-limit",
            "*/mj/*:60:100",
        ]
    )
    config = config_from_args(args)
    flags = (config.oss_task_exists, config.newapi_notify, config.newapi_account_filter)
    assert flags == (True, True, True)
    assert (config.newapi_mode_clear, config.newapi_forward_url) == (True, False)
    assert config.newapi_sync_interval == 2.5
    assert config.trueai_user_keys == frozenset({"u1", "u2"})
    assert (config.trueai_upload_base64, config.trueai_fill_official_cdn) == (False, True)
    assert (config.trueai_user_core_size, config.trueai_user_queue_size) == (2, 3)
    assert config.trueai_ip_rate_limit == (("*/mj/submit/*", 3.0, 1),)
    assert config.trueai_ip_black_rate_limit == (("*/mj/*", 60.0, 100),)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--trueai-rate-limit", "nonsense"])
    defaults = config_from_args(build_parser().parse_args([]))
    assert (defaults.newapi_forward_url, defaults.trueai_upload_base64) == (True, True)
    assert defaults.newapi_sync_interval == 15.0
    with pytest.raises(ValueError, match="trueai_ip_rate_limit"):
        Simulator(trueai_ip_rate_limit=[("*", 0.0, 1)])
