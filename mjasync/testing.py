"""Helpers for testing code that uses mjasync, without a network.

``MockTransport`` answers every request with a handler you write; ``json_response``,
``task_payload`` and ``submit_payload`` build realistic wire bodies. For end-to-end
tests, run ``mjasync.simulator.Simulator`` instead: a real server that speaks the API.

```python
transport = MockTransport(lambda request: json_response(submit_payload("123")))
async with mjasync.Client("http://mj.test", transport=transport) as mj:
    sub = await mj.imagine("a cat")
assert transport.requests[0].json == {"prompt": "a cat"}
```
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._transport import AsyncTransport, Request, Response

__all__ = ["MockTransport", "json_response", "submit_payload", "task_payload"]

Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport(AsyncTransport):
    """Answers every request with *handler* (sync or async) and records the requests.

    A handler may raise any `mjasync.TransportError` to simulate a network failure.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        """Record *request* and return the handler's response."""
        self.requests.append(request)
        response = self.handler(request)
        if not isinstance(response, Response):
            response = await response
        return response

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response whose body is *body* encoded as JSON."""
    merged = {
        "content-type": "application/json",
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    return Response(status=status, headers=merged, content=json.dumps(body).encode())


def submit_payload(
    task_id: str | None = "1700000000000001",
    code: int = 1,
    description: str = "Submit success",
    **properties: Any,
) -> dict[str, Any]:
    """A submit answer ``{code, description, result, properties}``."""
    return {"code": code, "description": description, "result": task_id, "properties": properties}


def task_payload(
    task_id: str = "1700000000000001",
    status: str = "SUCCESS",
    *,
    progress: str | None = None,
    action: str = "IMAGINE",
    prompt: str = "a cat",
    image_url: str | None = None,
    buttons: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A task object as PLUS sends it; a SUCCESS imagine gets the grid's nine buttons."""
    done = status == "SUCCESS"
    if progress is None:
        progress = {"SUCCESS": "100%", "IN_PROGRESS": "50%", "SUBMITTED": "0%"}.get(status, "")
    if buttons is None:
        buttons = _grid_buttons("0ddb91a0-af46-4ae9-8e8e-c271074eb6e6") if done else []
    payload: dict[str, Any] = {
        "id": task_id,
        "action": action,
        "status": status,
        "prompt": prompt,
        "promptEn": prompt,
        "description": f"/imagine {prompt}",
        "state": None,
        "submitTime": 1748339029401,
        "startTime": 1748339030665 if status not in {"NOT_START", "SUBMITTED"} else None,
        "finishTime": 1748339072775 if done or status == "FAILURE" else None,
        "progress": progress,
        "imageUrl": image_url
        if image_url is not None
        else (f"https://cdn.example/{task_id}.png" if done else None),
        "failReason": None,
        "properties": {"finalPrompt": prompt},
        "buttons": buttons,
    }
    payload.update(extra)
    return payload


def _grid_buttons(job_hash: str) -> list[dict[str, Any]]:
    def button(custom_id: str, label: str = "", emoji: str = "") -> dict[str, Any]:
        return {"customId": custom_id, "emoji": emoji, "label": label, "type": 2, "style": 2}

    buttons = [button(f"MJ::JOB::upsample::{i}::{job_hash}", f"U{i}") for i in range(1, 5)]
    buttons.append(button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"))
    buttons += [button(f"MJ::JOB::variation::{i}::{job_hash}", f"V{i}") for i in range(1, 5)]
    return buttons
