"""Task query handlers (/mj/task/*), the /sim asset routes, and the per-dialect route table."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
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
from ._engine import Engine
from ._faults import Route
from ._newapi import mj_error
from ._parsing import BadRequest, Unreadable
from ._png import fake_mp4, render_image
from ._state import CANCEL, FAILURE, MODAL, SUCCESS, SimTask
from ._submits import (
    FAULTS_KEY,
    MODE_PREFIXES,
    Handler,
    SubmitBody,
    action,
    blend,
    change,
    describe,
    dialect_of,
    edits,
    error_response,
    imagine,
    modal,
    not_found,
    shorten,
    simple_change,
    state_of,
    submit_handler,
    swap_face,
    unreadable_response,
    upload,
    video,
)

__all__ = ["FAULTS_KEY", "MODE_PREFIXES", "RouteSpec", "routes_for"]


# -- task routes -----------------------------------------------------------------------------


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


async def sim_stats(request: web.Request) -> web.StreamResponse:
    """GET /sim/stats: the request counters, for tests that run the simulator in a process."""
    state = state_of(request)
    return json_response(dict(state.requests))


async def sim_faults(request: web.Request) -> web.StreamResponse:
    """GET /sim/faults: how many times each fault kind played (``FaultInjector.counts``)."""
    return json_response(dict(state_of(request).faults.counts))


def _task_record(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "action": task.action,
        "status": task.status,
        "state": task.state,
        "parentId": task.parent_id,
        "customId": task.custom_id,
        "index": task.index,
        "submitTime": task.submit_time,
        "startTime": task.start_time,
        "finishTime": task.finish_time,
        "failReason": task.fail_reason,
        "plannedFailure": task.planned_failure,
        "stuck": task.stuck,
    }


async def sim_tasks(request: web.Request) -> web.StreamResponse:
    """GET /sim/tasks: every task the server created, oldest first, with what made it.

    Not a proxy route: the simulator's own record (kind, state, parent, customId, index,
    times, planned faults), so a harness in another process can tell, for instance, a
    resent imagine (two tasks with one ``state``) or a resent U1 (two upscales with one
    ``parentId`` and ``index``).
    """
    return json_response([_task_record(task) for task in state_of(request).tasks.values()])


async def sim_requests(request: web.Request) -> web.StreamResponse:
    """GET /sim/requests[?route=<spec>]: the request log, with each request's faults.

    ``route`` filters like `Simulator.inject`'s route (``"imagine"``,
    ``"POST /mj/submit/action"``...). Bodies are the decoded JSON the server received.
    """
    state = state_of(request)
    spec = request.query.get("route")
    wanted: set[str] | None = None
    if spec:
        wanted = {r.key for r in state.routes if r.matches(spec)}
    return json_response(
        [
            {
                "time": record.time,
                "method": record.method,
                "route": record.route,
                "path": record.path,
                "body": record.body,
                "faults": list(record.faults),
            }
            for record in state.request_log
            if wanted is None or record.route in wanted
        ]
    )


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


# -- /sim asset routes -----------------------------------------------------------------------

_IMAGE_NAME = re.compile(r"^(?P<id>\d+)(?:-preview-(?P<pct>\d{1,3})|_(?P<n>\d))?\.png$")


def image_bytes(state: SimulatorState, name: str) -> bytes | None:
    """The PNG the simulator serves as ``/sim/images/<name>``, or ``None``."""
    match = _IMAGE_NAME.match(name)
    task = state.tasks.get(match["id"]) if match else None
    if match is None or task is None:
        return None
    pct = int(match["pct"]) if match["pct"] is not None else None
    if pct is not None and pct > 100:
        return None
    if match["n"] is not None:
        # One image of a grid (trueai's filled imageUrls / video thumbnails).
        return render_image(f"{task.id}_{match['n']}", state.config.image_size, grid=False)
    grid = Engine.is_grid(task)
    return render_image(task.id, state.config.image_size, grid=grid, preview_pct=pct)


async def sim_image(request: web.Request) -> web.StreamResponse:
    """GET /sim/images/{name}: the PNG of a task (final, preview, or one of its four)."""
    data = image_bytes(state_of(request), request.match_info["name"])
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="image/png")


async def newapi_image(request: web.Request) -> web.StreamResponse:
    """GET /mj/image/{id} (new-api RelayMidjourneyImage, no key needed): the stored upstream
    image of a task, streamed."""
    state = state_of(request)
    record = state.newapi.records.get(request.match_info["id"])
    if record is None:
        return json_response({"error": "midjourney_task_not_found"}, status=400)
    name = record.image_url.rsplit("/sim/images/", 1)[-1] if record.image_url else ""
    data = image_bytes(state, name.split("?", 1)[0]) if name else None
    if data is None:
        return json_response({"error": "http_get_image_failed"}, status=500)
    return web.Response(body=data, content_type="image/png")


async def sim_upload(request: web.Request) -> web.StreamResponse:
    """GET /sim/uploads/{name}: bytes uploaded through a submit."""
    state = state_of(request)
    stored = state.uploads.get(request.match_info["name"])
    if stored is None:
        raise web.HTTPNotFound()
    data, mime = stored
    return web.Response(body=data, content_type=mime)


_VIDEO_NAME = re.compile(r"^(?P<id>\d+)(?:_(?P<n>\d))?\.mp4$")


async def sim_video(request: web.Request) -> web.StreamResponse:
    """GET /sim/videos/{id}.mp4 (or {id}_{n}.mp4, one of trueai's four): a tiny stand-in."""
    state = state_of(request)
    name = request.match_info["name"]
    match = _VIDEO_NAME.match(name)
    task = state.tasks.get(match["id"]) if match else None
    if task is None or task.video_url is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=fake_mp4(hashlib.sha256(name.encode()).hexdigest()), content_type="video/mp4"
    )


# -- route table -----------------------------------------------------------------------------

ALL = frozenset({"oss", "plus", "trueai", "newapi"})
NOT_OSS = frozenset({"plus", "trueai", "newapi"})
# Routes novicezk v2.6.3 has (SubmitController.java, TaskController.java); PLUS is its
# closed-source successor and new-api relays /change and /simple-change too
# (router/relay-router.go). trueai removed them in v10.
CHANGE_DIALECTS = frozenset({"oss", "plus", "newapi"})


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    """One route of the API and the dialects that serve it."""

    route: Route
    handler: Handler
    dialects: frozenset[str]
    # Served without a key (the /sim assets, new-api's /mj/image/{id}).
    public: bool = False


def _spec(
    method: str,
    template: str,
    name: str,
    handler: Handler,
    dialects: frozenset[str],
    *,
    creates_task: bool = False,
    public: bool = False,
    serves_image: bool = False,
) -> RouteSpec:
    return RouteSpec(
        Route(method, template, name, creates_task, serves_image), handler, dialects, public
    )


def _submit_spec(
    template: str, name: str, fn: SubmitBody, dialects: frozenset[str], *, creates_task: bool = True
) -> RouteSpec:
    return _spec(
        "POST", template, name, submit_handler(name, fn), dialects, creates_task=creates_task
    )


ROUTES: tuple[RouteSpec, ...] = (
    _submit_spec("/mj/submit/imagine", "imagine", imagine, ALL),
    _submit_spec("/mj/submit/blend", "blend", blend, ALL),
    _submit_spec("/mj/submit/describe", "describe", describe, ALL),
    _submit_spec("/mj/submit/shorten", "shorten", shorten, NOT_OSS),
    _submit_spec("/mj/submit/action", "action", action, NOT_OSS),
    _submit_spec("/mj/submit/modal", "modal", modal, NOT_OSS),
    _submit_spec("/mj/submit/change", "change", change, CHANGE_DIALECTS),
    _submit_spec("/mj/submit/simple-change", "simple-change", simple_change, CHANGE_DIALECTS),
    _submit_spec(
        "/mj/submit/upload-discord-images",
        "upload-discord-images",
        upload,
        NOT_OSS,
        creates_task=False,
    ),
    _submit_spec("/mj/insight-face/swap", "swap", swap_face, NOT_OSS),
    _submit_spec("/mj/submit/edits", "edits", edits, frozenset({"trueai", "newapi"})),
    _submit_spec("/mj/submit/edit", "edit", edits, frozenset({"trueai"})),
    _submit_spec("/mj/submit/video", "video", video, frozenset({"trueai", "newapi"})),
    _spec("GET", "/mj/task/{id}/fetch", "fetch", fetch, ALL),
    _spec("POST", "/mj/task/list-by-condition", "list-by-condition", list_by_condition, ALL),
    _spec(
        "POST", "/mj/task/list-by-ids", "list-by-ids", list_by_ids, frozenset({"plus", "trueai"})
    ),
    _spec("GET", "/mj/task/list", "list", task_list, frozenset({"oss", "plus", "trueai"})),
    _spec("GET", "/mj/task/queue", "queue", task_queue, frozenset({"oss", "plus"})),
    _spec("GET", "/mj/task/{id}/image-seed", "image-seed", image_seed, NOT_OSS),
    _spec("POST", "/mj/task/{id}/cancel", "cancel", cancel, frozenset({"plus", "trueai"})),
    _spec(
        "GET",
        "/mj/image/{id}",
        "image",
        newapi_image,
        frozenset({"newapi"}),
        public=True,
        serves_image=True,
    ),
)

SIM_ROUTES: tuple[RouteSpec, ...] = (
    _spec("GET", "/sim/images/{name}", "images", sim_image, ALL, public=True, serves_image=True),
    _spec("GET", "/sim/uploads/{name}", "uploads", sim_upload, ALL, public=True),
    _spec("GET", "/sim/videos/{name}", "videos", sim_video, ALL, public=True),
    _spec("GET", "/sim/stats", "stats", sim_stats, ALL, public=True),
    _spec("GET", "/sim/faults", "faults", sim_faults, ALL, public=True),
    _spec("GET", "/sim/tasks", "tasks", sim_tasks, ALL, public=True),
    _spec("GET", "/sim/requests", "requests", sim_requests, ALL, public=True),
)


def routes_for(dialect: str, disabled: frozenset[str]) -> list[RouteSpec]:
    """The API routes a ``dialect`` serves, minus the ``disabled`` ones, plus the /sim routes."""
    chosen = [
        spec
        for spec in ROUTES
        if dialect in spec.dialects and not any(spec.route.matches(d) for d in disabled)
    ]
    return chosen + list(SIM_ROUTES)
