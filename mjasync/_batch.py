"""Task snapshots as the server sent them: one by id, or many through the best list route.

Many ids go to ``POST /mj/task/list-by-condition``; a server without it is asked with
``list-by-ids``, and one without that either with one ``GET /task/{id}/fetch`` per id
(eight at a time). A route found missing is never asked again by this client. Answers
are the JSON objects as sent: the poller decodes only the snapshots that changed (most
of its CPU is decoding), `Client.fetch` and `Client.fetch_many` decode what they return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

import anyio

from ._detect import Evidence
from ._errors import APIError, DecodeError, MJError, TaskNotFoundError, body_preview
from ._models import task_path
from ._responses import read_body, route_missing
from ._serde import task_object
from ._transport import Response

__all__ = ["BatchFetcher", "BatchRoute"]

logger = logging.getLogger("mjasync")

BatchRoute = Literal["list-by-condition", "list-by-ids", "fetch"]
"""How a client asks about many tasks at once (`Client.batch_route`)."""

_LIST_ROUTES: dict[str, str | None] = {
    "/task/list-by-condition": "/task/list-by-ids",
    "/task/list-by-ids": None,
}
_FALLBACK_FETCH_CONCURRENCY = 8
_T = TypeVar("_T")


class Requester(Protocol):
    """The client's retried request: sends, parses with *parse*, raises mapped errors."""

    async def __call__(
        self, method: str, path: str, parse: Callable[[Response], _T], *, json: object = None
    ) -> _T: ...


class BatchFetcher:
    """Raw task JSON by id or by batch; the poller's `TaskSource`.

    Args:
        request: the client's retried request.
        where: ``"METHOD URL"`` of a request, for messages.
        evidence: what the client learns about its server (task JSON is read for it).
    """

    def __init__(
        self, request: Requester, where: Callable[[str, str], str], evidence: Evidence
    ) -> None:
        self._request = request
        self._where = where
        self._evidence = evidence
        self._list_route: str | None = "/task/list-by-condition"

    @property
    def route(self) -> BatchRoute:
        """The route batches go to now: ``list-by-condition``, ``list-by-ids`` or ``fetch``."""
        if self._list_route == "/task/list-by-condition":
            return "list-by-condition"
        if self._list_route == "/task/list-by-ids":
            return "list-by-ids"
        return "fetch"

    @property
    def per_id(self) -> bool:
        """True once batches are fetched id by id (the server has no list route)."""
        return self._list_route is None

    async def fetch_one(self, task_id: str) -> dict[str, Any]:
        """``GET /task/{id}/fetch``: the task's JSON object.

        Raises:
            mjasync.TaskNotFoundError: the server does not know the id (empty 200, 204,
                code 3 or 4 "task_no_found").
            mjasync.DecodeError: the answer is not a task (no JSON object with an id).
        """
        path = task_path(task_id, "fetch")
        where = self._where("GET", path)
        evidence = self._evidence

        def parse(response: Response) -> dict[str, Any]:
            body = read_body(response, where, task_id=task_id)
            if body is None or body == {}:
                msg = f"{where}: task {task_id} not found (empty answer, HTTP {response.status})"
                raise TaskNotFoundError(msg, task_id=task_id, status=response.status)
            if evidence.watching:
                evidence.observe_task(body)
            return task_object(body)

        return await self._request("GET", path, parse)

    async def fetch_batch(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The JSON objects of the tasks in *ids* the server knows (others are left out)."""
        if not ids:
            return []
        while self._list_route is not None:
            route = self._list_route
            where = self._where("POST", route)

            def parse(response: Response, where: str = where) -> list[dict[str, Any]]:
                body = read_body(response, where)
                if body is None:
                    return []
                if not isinstance(body, list):
                    msg = f"{where}: expected a JSON array of tasks, got {body_preview(body)}"
                    raise DecodeError(msg, status=response.status, body=body)
                if body and self._evidence.watching:
                    self._evidence.observe_task(body[-1])
                return [item for item in body if type(item) is dict]

            try:
                return await self._request("POST", route, parse, json={"ids": list(ids)})
            except APIError as error:
                if not route_missing(error):
                    raise
                self._list_route = _LIST_ROUTES[route]
                logger.info("%s is missing on this server; trying %s", route, self._list_route)
        return await self._fetch_each(ids)

    async def _fetch_each(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        errors: list[MJError] = []
        limiter = anyio.CapacityLimiter(_FALLBACK_FETCH_CONCURRENCY)

        async def one(task_id: str) -> None:
            async with limiter:
                try:
                    results[task_id] = await self.fetch_one(task_id)
                except TaskNotFoundError:
                    return
                except MJError as error:
                    # Kept, not raised: a task group would cancel the other fetches and
                    # hand the caller an ExceptionGroup instead of an MJError.
                    errors.append(error)

        async with anyio.create_task_group() as group:
            for task_id in ids:
                group.start_soon(one, task_id)
        if errors:
            # An id left out reads as "unknown": a failed one must fail the whole answer.
            raise errors[0]
        return [results[i] for i in ids if i in results]
