"""A FastAPI app served by several worker processes, where every webhook wakes its waiter.

    uvicorn examples.fastapi_workers.app:app --workers 4 --port 8000

The proxy POSTs each task update to ``PUBLIC_URL/webhook``, and the load balancer (here
the kernel, spreading connections over uvicorn's workers) hands it to *any* worker, while
the request waiting on that task may sit in another. Two things make that work:

* one ``MJ_NOTIFY_TOKEN`` for every worker, so whichever worker gets the callback accepts
  it (a worker with a token of its own would answer 403);
* a notification bus on Redis (``REDIS_URL``): the worker that accepted a callback
  publishes it, and every other worker wakes its own waiters from it.

Polling stays the source of truth: with Redis down, waits still finish, later.

Environment: ``MJ_BASE_URL``, ``MJ_API_KEY`` (the proxy), ``MJ_NOTIFY_TOKEN`` (required),
``PUBLIC_URL`` (this app, as the proxy reaches it), ``REDIS_URL`` (``off`` runs without a
bus, to compare), and optionally ``MJ_POLL_SECONDS`` (poll every task this often instead
of `mjasync.PollPolicy`'s defaults).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import attrs
from fastapi import FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel

import mjasync

# Ids of the tasks whose final callback this worker's /webhook accepted, newest last.
_FINALS_KEPT = 10_000
_FINAL = frozenset({"SUCCESS", "FAILURE", "CANCEL", "MODAL"})


class ImagineBody(BaseModel):
    """The body of ``POST /imagine``."""

    prompt: str


@attrs.define
class WorkerCounters:
    """What this worker process's /webhook route saw (each worker has its own)."""

    accepted: int = 0
    refused: int = 0
    woke: int = 0
    finals: OrderedDict[str, None] = attrs.field(factory=OrderedDict)

    def final_here(self, task_id: str) -> None:
        self.finals[task_id] = None
        if len(self.finals) > _FINALS_KEPT:
            self.finals.popitem(last=False)


def task_json(task: mjasync.Task) -> dict[str, Any]:
    """The fields a front end needs."""
    return {
        "id": task.id,
        "status": str(task.status),
        "progress": task.progress,
        "image_url": task.image_url,
        "fail_reason": task.fail_reason,
        "finish_time": task.finish_time.timestamp() if task.finish_time else None,
    }


def poll_policy() -> mjasync.PollPolicy | None:
    """``MJ_POLL_SECONDS`` as a policy that polls every task that often; None: the defaults."""
    seconds = os.environ.get("MJ_POLL_SECONDS")
    if not seconds:
        return None
    every = float(seconds)
    return mjasync.PollPolicy(
        interval=every, max_interval=every, first_poll=every, webhook_interval=every
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client per worker process, opened on that worker's event loop."""
    if not os.environ.get("MJ_NOTIFY_TOKEN"):
        msg = "set MJ_NOTIFY_TOKEN: every worker must accept the callbacks of the others"
        raise RuntimeError(msg)
    public_url = os.environ["PUBLIC_URL"].rstrip("/")
    redis_url = os.environ["REDIS_URL"]
    bus = None if redis_url == "off" else mjasync.RedisBus(redis_url)
    async with mjasync.Client(
        notify_hook=f"{public_url}/webhook", notify_bus=bus, poll=poll_policy()
    ) as mj:
        app.state.mj = mj
        app.state.counters = WorkerCounters()
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/imagine", status_code=202)
async def imagine(body: ImagineBody, request: Request) -> dict[str, Any]:
    """Submit; the answer names the worker that submitted."""
    mj: mjasync.Client = request.app.state.mj
    try:
        submission = await mj.imagine(body.prompt)
    except mjasync.InvalidRequestError as error:
        raise HTTPException(422, str(error)) from None
    except mjasync.SubmitRejectedError as error:
        raise HTTPException(409, str(error)) from None
    return {"task_id": submission.task_id, "worker": os.getpid()}


@app.get("/tasks/{task_id}")
async def status(
    task_id: str, request: Request, wait: Annotated[float, Query(ge=0, le=600)] = 0.0
) -> dict[str, Any]:
    """The task now, or (``?wait=SECONDS``) once it finishes, whichever comes first.

    ``worker`` tells which process waited, for how long, whether the wait ended with
    the task finished (``timed_out`` false), and whether this worker's own /webhook got
    the task's final callback (if not, the bus or polling brought it).
    """
    mj: mjasync.Client = request.app.state.mj
    counters: WorkerCounters = request.app.state.counters
    started = time.monotonic()
    task: mjasync.Task | None = None
    timed_out = False
    try:
        if wait > 0:
            try:
                task = await mj.await_task(task_id, timeout=wait)
            except mjasync.TaskError as error:
                task = error.task
            except mjasync.TaskTimeoutError as error:
                timed_out = True
                task = error.last
        learned_at = time.time()
        if task is None:
            task = await mj.fetch(task_id)
    except mjasync.TaskNotFoundError:
        raise HTTPException(404, f"no task {task_id}") from None
    return {
        **task_json(task),
        "worker": {
            "pid": os.getpid(),
            "waited": round(time.monotonic() - started, 4),
            "timed_out": timed_out,
            "learned_at": learned_at,
            "final_callback_here": task_id in counters.finals,
        },
    }


@app.post("/webhook")
async def webhook(request: Request) -> Response:
    """The proxy's callbacks, on whichever worker the connection reached."""
    mj: mjasync.Client = request.app.state.mj
    counters: WorkerCounters = request.app.state.counters
    result = await mj.handle_notification(
        await request.body(), token=request.query_params.get("token")
    )
    if not result.accepted:
        counters.refused += 1
    else:
        counters.accepted += 1
        counters.woke += result.woke
        if result.task is not None and result.task.status in _FINAL:
            counters.final_here(result.task.id)
    return Response(status_code=result.status)


@app.get("/worker")
async def worker(request: Request) -> dict[str, Any]:
    """This worker process: its pid, its /webhook counters, its bus and its poller."""
    mj: mjasync.Client = request.app.state.mj
    counters: WorkerCounters = request.app.state.counters
    bus = mj.notify_bus
    return {
        "pid": os.getpid(),
        "webhook": {
            "accepted": counters.accepted,
            "refused": counters.refused,
            "woke": counters.woke,
            "finals": len(counters.finals),
        },
        "bus": attrs.asdict(bus.stats) if bus is not None else None,
        "poll": attrs.asdict(mj.poll_stats),
    }
