"""The simulator's own routes (/sim/*, no key needed): the images, uploads and videos its
tasks point at, and what a test may inspect (stats, faults, tasks, requests); and
new-api's /mj/image/{id}, which serves those images too."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

from ._context import SimulatorState
from ._dialects import (
    json_response,
)
from ._engine import Engine
from ._png import fake_mp4, render_image
from ._state import SimTask
from ._submitting import (
    state_of,
)


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
