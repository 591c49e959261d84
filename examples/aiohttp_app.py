"""An aiohttp app that shares one mjasync client across requests.

    MJ_BASE_URL=https://your-proxy MJ_API_KEY=... PUBLIC_URL=https://this-app \\
        python examples/aiohttp_app.py

The client is opened and closed by the app's cleanup context; the webhook route is
the client's own aiohttp handler.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

import mjasync

MJ = web.AppKey("mj", mjasync.Client)


def task_json(task: mjasync.Task) -> dict[str, Any]:
    """The fields a front end needs."""
    return {
        "id": task.id,
        "status": str(task.status),
        "progress": task.progress,
        "image_url": task.image_url,
        "fail_reason": task.fail_reason,
    }


async def imagine(request: web.Request) -> web.Response:
    """``POST /imagine {"prompt": ...}`` -> 202 ``{"task_id": ...}``."""
    body = await request.json()
    try:
        submission = await request.app[MJ].imagine(str(body.get("prompt", "")))
    except mjasync.InvalidRequestError as error:
        raise web.HTTPUnprocessableEntity(text=str(error)) from None
    return web.json_response({"task_id": submission.task_id}, status=202)


async def status(request: web.Request) -> web.Response:
    """``GET /tasks/{id}[?wait=SECONDS]``: the task now, or once it finishes."""
    mj = request.app[MJ]
    task_id = request.match_info["task_id"]
    wait = float(request.query.get("wait", "0"))
    try:
        if wait > 0:
            try:
                return web.json_response(task_json(await mj.await_task(task_id, timeout=wait)))
            except mjasync.TaskError as error:
                return web.json_response(task_json(error.task))
            except mjasync.TaskTimeoutError:
                pass
        return web.json_response(task_json(await mj.fetch(task_id)))
    except mjasync.TaskNotFoundError:
        raise web.HTTPNotFound(text=f"no task {task_id}") from None


async def webhook(request: web.Request) -> web.StreamResponse:
    """The proxy's notifyHook callbacks; the client checks the token."""
    response: web.StreamResponse = await request.app[MJ].webhook_handler(request)
    return response


def create_app(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    public_url: str | None = None,
    poll: mjasync.PollPolicy | None = None,
) -> web.Application:
    """Build the app; arguments default to MJ_BASE_URL, MJ_API_KEY and PUBLIC_URL."""
    public_url = public_url or os.environ.get("PUBLIC_URL")

    async def client(app: web.Application) -> AsyncIterator[None]:
        hook = f"{public_url.rstrip('/')}/webhook" if public_url else None
        async with mjasync.Client(base_url, api_key, notify_hook=hook, poll=poll) as mj:
            app[MJ] = mj
            yield

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_post("/imagine", imagine)
    app.router.add_get("/tasks/{task_id}", status)
    app.router.add_post("/webhook", webhook)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), port=int(os.environ.get("PORT", "8000")))
