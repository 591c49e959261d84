"""A scriptable in-memory proxy on MockTransport, for poller tests that need exact control."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mjasync import Request, Response
from mjasync.testing import Clock, MockTransport, json_response, task_payload


class FakeProxy:
    """Task states you set by hand; records every status request with its ids and time.

    The time is *clock*'s (a `VirtualClock` the client polls on), or the monotonic clock.
    """

    def __init__(
        self,
        *,
        routes: tuple[str, ...] = ("list-by-condition", "list-by-ids", "fetch"),
        missing_status: int = 404,
        clock: Clock | None = None,
    ) -> None:
        self._now: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self.tasks: dict[str, dict[str, Any]] = {}
        self.routes = routes
        self.missing_status = missing_status
        self.log: list[tuple[float, str, list[str]]] = []
        self.hidden: set[str] = set()  # left out of batch answers, as a lagging relay does
        self.queued: list[Response] = []  # answers that override the next status requests
        self.on_request: Callable[[str, list[str]], None] | None = None
        self.transport = MockTransport(self.handle)

    def set(self, task_id: str, status: str, progress: str | None = None, **extra: Any) -> None:
        """Put *task_id* in *status*."""
        self.tasks[task_id] = task_payload(task_id, status, progress=progress, **extra)

    def ids_polled(self) -> list[str]:
        """Every id any status request asked about, in order."""
        return [i for _, _, ids in self.log for i in ids]

    def count(self, route: str) -> int:
        """Requests to *route* (``list-by-condition``, ``list-by-ids`` or ``fetch``)."""
        return sum(1 for _, r, _ in self.log if r == route)

    def handle(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        if path.endswith("/fetch"):
            route, ids = "fetch", [path.split("/")[-2]]
        else:
            route = path.rsplit("/", 1)[-1]
            body = request.json if isinstance(request.json, dict) else {}
            ids = [str(i) for i in body.get("ids", [])]
        self.log.append((self._now(), route, ids))
        if self.on_request is not None:
            self.on_request(route, ids)
        if route not in self.routes:
            return json_response({"error": "no route"}, status=self.missing_status)
        if self.queued:
            return self.queued.pop(0)
        if route == "fetch":
            task = self.tasks.get(ids[0])
            if task is None:
                return Response(status=200, content=b"")
            return json_response(task)
        return json_response(
            [self.tasks[i] for i in ids if i in self.tasks and i not in self.hidden]
        )
