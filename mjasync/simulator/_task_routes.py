"""The task query handlers (/mj/task/*): fetch, list-by-condition, list-by-ids, list,
queue, image-seed and cancel, as each dialect answers them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from ._context import SimulatorState
from ._dialects import (
    displays,
    json_response,
    spring_error,
    task_json,
    trueai_role,
    unknown_task,
)
from ._newapi import mj_error
from ._parsing import BadRequest, Unreadable
from ._state import CANCEL, FAILURE, MODAL, SUCCESS, SimTask
from ._submitting import (
    dialect_of,
    error_response,
    not_found,
    state_of,
    unreadable_response,
)


def _wire(state: SimulatorState, task: SimTask) -> dict[str, Any]:
    return task_json(task, state.config)


async def fetch(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/{id}/fetch."""
    state = state_of(request)
    task_id = request.match_info["id"]
    if state.config.dialect == "newapi":
        # mjproxy_handler.go RelayMidjourneyTask: new-api's own copy, never the upstream.
        state.newapi_read()
        record = state.newapi.records.get(task_id)
        if record is None:
            return mj_error(4, "task_no_found")
        return json_response(state.newapi.view(record, str(request.url.origin())))
    task = state.tasks.get(task_id)
    if task is None:
        return unknown_task(state.config.dialect)
    return json_response(_wire(state, task))


async def _list(request: web.Request, *, with_displays: bool) -> web.StreamResponse:
    state = state_of(request)
    dialect = state.config.dialect
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = ...
    if dialect == "newapi":
        if not isinstance(body, dict) or not isinstance(body.get("ids", []), list | None):
            # RelayMidjourneyTask: c.BindJSON failed.
            return mj_error(4, "do_request_failed")
        state.newapi_read()
        origin = str(request.url.origin())
        views = [
            state.newapi.view(state.newapi.records[i], origin)
            for i in dict.fromkeys(str(i) for i in body.get("ids") or [])
            if i in state.newapi.records
        ]
        return json_response(views)
    if not isinstance(body, dict):
        exc = Unreadable("A non-empty request body is required." if body is None else "bad body")
        return unreadable_response(request, exc)
    ids = body.get("ids")
    found: list[dict[str, Any]] = []
    if isinstance(ids, list):
        for task_id in dict.fromkeys(str(i).strip() for i in ids):
            task = state.tasks.get(task_id)
            if task is not None:
                data = _wire(state, task)
                if with_displays and "displays" not in data:
                    data["displays"] = displays(task)
                found.append(data)
    elif ids is not None and dialect == "oss":
        return spring_error(request, 400)
    state.rng.shuffle(found)  # the servers promise no order; make clients cope
    return json_response(found)


async def list_by_condition(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/list-by-condition {ids}."""
    return await _list(request, with_displays=False)


async def list_by_ids(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/list-by-ids {ids} (PLUS adds ``displays``)."""
    return await _list(request, with_displays=True)


async def task_list(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/list: every task, newest first (trueai: only the latest 100)."""
    state = state_of(request)
    newest_first = list(reversed(state.tasks.values()))
    if state.config.dialect == "trueai":
        newest_first = newest_first[:100]
    return json_response([_wire(state, task) for task in newest_first])


async def task_queue(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/queue (novicezk TaskController.java queue()): queued and running tasks,
    oldest first."""
    state = state_of(request)
    live = [t for t in state.tasks.values() if not t.is_terminal and t.status != MODAL]
    live.sort(key=lambda t: t.submit_time)
    return json_response([_wire(state, task) for task in live])


async def _seed_of(state: SimulatorState, task: SimTask) -> web.Response:
    await asyncio.sleep(state.config.scaled(state.config.seed_delay))
    if not task.seed:
        task.seed = state.ids.digits(10)
    return json_response({"code": 1, "description": "成功", "result": task.seed})


async def image_seed(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/{id}/image-seed: answers after ``seed_delay``."""
    state = state_of(request)
    dialect = dialect_of(state)
    task_id = request.match_info["id"]
    if state.config.dialect == "newapi" and task_id not in state.newapi.records:
        # mjproxy_handler.go RelayMidjourneyTaskImageSeed: new-api looks the task up itself,
        # then relays the upstream's answer re-encoded, with its HTTP status.
        return mj_error(4, "task_no_found")
    task = state.tasks.get(task_id)
    if task is None:
        # trueai TaskController.cs ImageSeed: NotFound + code 3.
        text = "关联任务不存在或已失效" if dialect == "trueai" else "任务不存在"
        return error_response(state, not_found(text))
    if task.status != SUCCESS and not task.seed:
        # trueai: no message hash yet -> BadRequest + code 4.
        text = "关联任务状态错误" if dialect == "trueai" else "任务状态错误"
        return error_response(state, BadRequest(4, text, trueai_status=400))
    answer = await _seed_of(state, task)
    if state.config.dialect == "newapi":
        decoded = json.loads(answer.body if isinstance(answer.body, bytes) else b"{}")
        body = {
            "code": decoded["code"],
            "description": decoded["description"],
            "properties": decoded.get("properties"),
            "result": decoded["result"],
        }
        return json_response(body, status=answer.status)
    return answer


async def cancel(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/{id}/cancel: CANCEL (plus) or FAILURE "取消任务" (trueai, admins only)."""
    state = state_of(request)
    task = state.tasks.get(request.match_info["id"])
    if state.config.dialect == "trueai":
        # trueai TaskController.cs Cancel: non-admins get BadRequest("演示模式，禁止操作");
        # admins always get an empty 200, and only a live task changes.
        if trueai_role(state.config, request.headers) != "ADMIN":
            return _aspnet_text(request, 400, "演示模式，禁止操作")
        if task is not None and not task.is_terminal:
            state.engine.cancel(task, status=FAILURE, reason="取消任务")
        return web.Response(status=200, body=b"")
    if task is None:
        return error_response(state, not_found("任务不存在"))
    if task.is_terminal:
        return error_response(state, BadRequest(4, f"任务状态错误: {task.status}"))
    state.engine.cancel(task, status=CANCEL, reason=None)
    return json_response({"code": 1, "description": "成功", "result": task.id})


def _aspnet_text(request: web.Request, status: int, text: str) -> web.Response:
    """An ASP.NET Core ObjectResult holding a string: StringOutputFormatter's text/plain,
    unless the client asked for JSON only (then the JSON formatter writes a JSON string)."""
    accept = request.headers.get("Accept", "*/*")
    if "application/json" in accept and "*/*" not in accept and "text/plain" not in accept:
        return json_response(text, status=status)
    return web.Response(status=status, text=text, content_type="text/plain")
