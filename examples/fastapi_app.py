"""A FastAPI app that shares one mjasync client across requests.

    MJ_BASE_URL=https://your-proxy MJ_API_KEY=... PUBLIC_URL=https://this-app \\
        uvicorn examples.fastapi_app:app

The client lives for as long as the app (the lifespan opens and closes it). With
``PUBLIC_URL`` set, every submit carries ``PUBLIC_URL/webhook?token=...`` so the proxy's
callbacks wake waiters at once; polling stays the source of truth either way.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import mjasync


class ImagineBody(BaseModel):
    """The body of ``POST /imagine``."""

    prompt: str


def task_json(task: mjasync.Task) -> dict[str, Any]:
    """The fields a front end needs."""
    return {
        "id": task.id,
        "status": str(task.status),
        "progress": task.progress,
        "image_url": task.image_url,
        "fail_reason": task.fail_reason,
        "buttons": [button.describe() for button in task.buttons],
    }


def create_app(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    public_url: str | None = None,
    poll: mjasync.PollPolicy | None = None,
) -> FastAPI:
    """Build the app; arguments default to MJ_BASE_URL, MJ_API_KEY and PUBLIC_URL."""
    public_url = public_url or os.environ.get("PUBLIC_URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hook = f"{public_url.rstrip('/')}/webhook" if public_url else None
        async with mjasync.Client(base_url, api_key, notify_hook=hook, poll=poll) as mj:
            app.state.mj = mj
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/imagine", status_code=202)
    async def imagine(body: ImagineBody, request: Request) -> dict[str, Any]:
        mj: mjasync.Client = request.app.state.mj
        try:
            submission = await mj.imagine(body.prompt)
        except mjasync.InvalidRequestError as error:
            raise HTTPException(422, str(error)) from None
        except mjasync.SubmitRejectedError as error:
            raise HTTPException(409, str(error)) from None
        return {"task_id": submission.task_id, "queue_position": submission.queue_position}

    @app.get("/tasks/{task_id}")
    async def status(task_id: str, request: Request, wait: float = 0.0) -> dict[str, Any]:
        """The task now, or (``?wait=SECONDS``) once it finishes, whichever comes first."""
        mj: mjasync.Client = request.app.state.mj
        try:
            if wait > 0:
                try:
                    return task_json(await mj.await_task(task_id, timeout=wait))
                except mjasync.TaskError as error:
                    return task_json(error.task)
                except mjasync.TaskTimeoutError as error:
                    if error.last is not None:
                        return task_json(error.last)
            return task_json(await mj.fetch(task_id))
        except mjasync.TaskNotFoundError:
            raise HTTPException(404, f"no task {task_id}") from None

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        mj: mjasync.Client = request.app.state.mj
        result = await mj.handle_notification(
            await request.body(), token=request.query_params.get("token")
        )
        return JSONResponse({"ok": result.accepted, "reason": result.reason}, result.status)

    return app


app = create_app()
