"""What kind of server a client talks to: `ServerInfo`, and the evidence behind it.

The four dialects answer the same paths differently, and each leaves marks a client can
read without paying for anything:

* new-api (``router/web-router.go``) serves its web page, HTTP 200 ``text/html``, for every
  path and method its router lacks; its task JSON (``dto/midjourney.go`` MidjourneyDto)
  always has ``customId`` and ``maskBase64`` keys; its own errors say ``task_no_found``.
* trueai (``Models/TaskInfo.cs``, serialised by System.Text.Json, which ignores the
  Newtonsoft ``[JsonIgnore]`` on computed properties) sends ``isCompleted``, ``displays``,
  ``instanceId``…; ASP.NET Core answers a wrong method with an empty 405.
* novicezk's open-source proxy (``support/Task.java``) has no ``buttons`` field at all
  and no ``/submit/action``; Spring answers a missing path with ``{timestamp, status,
  error, path}`` and a wrong method with the same shape and 405.
* PLUS (closed source, Spring like novicezk) has ``/submit/action`` and buttons, and its
  task properties carry ``finalZhPrompt``.

A relay in front of a server shows the relay's marks first, so new-api wins over what
its upstream shows, then trueai, then novicezk, then PLUS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import anyio
import attrs

from ._buttons import CHANGE_PARENT_ACTIONS
from ._errors import (
    APIError,
    MJError,
    RouteNotFoundError,
    SubmitRejectedError,
    TaskNotFoundError,
)
from ._json import try_json
from ._transport import Response

__all__ = ["PROBES", "Dialect", "Evidence", "ServerInfo", "classify_probe", "probe"]

Dialect = Literal["oss", "plus", "trueai", "newapi", "unknown"]
"""A server kind `Client.server_info` can report."""

_PRECEDENCE: tuple[Dialect, ...] = ("newapi", "trueai", "oss", "plus")
# Task bodies are inspected (one per poll batch) until they settle the dialect and whether
# finished tasks carry buttons, or this many were seen.
_MAX_OBSERVED = 1000
# Keys only trueai's TaskInfo.cs serialises (computed or trueai-only properties).
_TRUEAI_KEYS = ("isCompleted", "instanceId", "isDiscord", "subInstanceId")
# Spring Boot's DefaultErrorAttributes, as novicezk (and PLUS, also Spring) answer errors.
_SPRING_KEYS = frozenset({"timestamp", "status", "error", "path"})
# GET on POST-only routes: 405 where the route exists, 404 where it does not; a GET of
# image-seed with an id no server has answers the proxy's own not-found JSON.
PROBES = (
    "/submit/action",
    "/submit/change",
    "/task/list-by-condition",
    "/task/list-by-ids",
    "/task/0/cancel",
    "/task/0/image-seed",
)
"""The paths `probe` asks about: free GETs, never a submit."""


@attrs.frozen(kw_only=True)
class ServerInfo:
    """What a `Client` has learned about its server; see `Client.server_info`.

    Every ``bool | None`` is None while unknown: nothing has shown it either way.

    Attributes:
        dialect: ``"oss"`` (novicezk's open-source midjourney-proxy), ``"plus"``
            (midjourney-proxy-plus), ``"trueai"`` (trueai-org's midjourney-proxy),
            ``"newapi"`` (the new-api relay, whatever is behind it) or ``"unknown"``.
        evidence: why, in words: the answers and fields the verdict rests on.
        action_route: ``POST /mj/submit/action`` exists (buttons are pressed by customId).
        change_route: ``POST /mj/submit/change`` exists (novicezk's U/V/reroll by index).
        buttons: finished tasks carry a ``buttons`` list (False: the field is missing,
            so `Task.button` offers the buttons ``/submit/change`` implies).
        list_by_condition: ``POST /mj/task/list-by-condition`` exists.
        list_by_ids: ``POST /mj/task/list-by-ids`` exists.
        cancel: ``POST /mj/task/{id}/cancel`` exists.
        image_seed: ``GET /mj/task/{id}/image-seed`` exists.
        notify_hook: this client sends a ``notifyHook`` with every submit.
        notifications: notifications accepted so far (a right token and a task body).
        finished_tasks: tasks this client has waited on to their end.
    """

    dialect: Dialect = "unknown"
    evidence: tuple[str, ...] = ()
    action_route: bool | None = None
    change_route: bool | None = None
    buttons: bool | None = None
    list_by_condition: bool | None = None
    list_by_ids: bool | None = None
    cancel: bool | None = None
    image_seed: bool | None = None
    notify_hook: bool = False
    notifications: int = 0
    finished_tasks: int = 0

    @property
    def notifications_arrive(self) -> bool | None:
        """True once a notification arrived; False when several tasks finished without one.

        None while it cannot be told: no ``notify_hook``, or too few finished tasks.
        """
        if self.notifications:
            return True
        if self.notify_hook and self.finished_tasks >= NOTIFY_SILENCE_TASKS:
            return False
        return None


NOTIFY_SILENCE_TASKS = 3
"""Finished tasks without a single notification after which the client warns (once)."""


RouteKey = Literal[
    "action_route", "change_route", "list_by_condition", "list_by_ids", "cancel", "image_seed"
]
"""The `ServerInfo` fields that say whether a route exists."""


def route_key(path: str) -> RouteKey | None:
    """The `ServerInfo` field a request path speaks for, or None."""
    if path.startswith("/submit/action"):
        return "action_route"
    if path.startswith("/submit/change"):
        return "change_route"
    if path == "/task/list-by-condition":
        return "list_by_condition"
    if path == "/task/list-by-ids":
        return "list_by_ids"
    if path.startswith("/task/") and path.endswith("/cancel"):
        return "cancel"
    if path.startswith("/task/") and path.endswith("/image-seed"):
        return "image_seed"
    return None


class Evidence:
    """Mutable record of what one client has seen; `snapshot` makes a `ServerInfo`."""

    def __init__(self) -> None:
        self._claims: dict[Dialect, list[str]] = {}
        self.routes: dict[RouteKey, bool] = {}
        self.buttons: bool | None = None
        self.notifications = 0
        self.finished_tasks = 0
        self.observed = 0
        self.settled_by_body = False

    @property
    def dialect(self) -> Dialect:
        for dialect in _PRECEDENCE:
            if dialect in self._claims:
                return dialect
        return "unknown"

    def claim(self, dialect: Dialect, reason: str) -> None:
        reasons = self._claims.setdefault(dialect, [])
        if reason not in reasons and len(reasons) < 4:
            reasons.append(reason)

    def route(self, path: str, present: bool) -> None:
        key = route_key(path)
        if key is not None:
            self.routes[key] = present
            if key == "action_route" and not present:
                self.claim("oss", "POST /mj/submit/action does not exist (novicezk has no /action)")

    def record(self, path: str, error: MJError | None) -> None:
        """Note what an answer to *path* (None: a success) says about the server."""
        if error is None:
            self.route(path, True)
            return
        if isinstance(error, RouteNotFoundError):
            self.route(path, False)
            if error.status is not None and 200 <= error.status < 300:
                self.claim(
                    "newapi", "answered a web page with HTTP 200 for a route it lacks (new-api)"
                )
        elif isinstance(error, SubmitRejectedError | TaskNotFoundError):
            self.route(path, True)
        if isinstance(error, APIError) and _says_newapi(error):
            self.claim("newapi", "answered with new-api's own error shape or wording")

    @property
    def watching(self) -> bool:
        """Whether task bodies are still worth a look (cheap check for the hot path)."""
        return (not self.settled_by_body or self.buttons is None) and (
            self.observed < _MAX_OBSERVED
        )

    def observe_task(self, raw: object) -> None:
        """Read the marks one task JSON object carries."""
        if not isinstance(raw, Mapping):
            return
        self.observed += 1
        buttons = raw.get("buttons")
        if raw.get("status") == "SUCCESS":
            if isinstance(buttons, list) and buttons:
                self.buttons = True
            elif buttons is None and self.buttons is None:
                self.buttons = False
        if "maskBase64" in raw and "customId" in raw:
            self.claim("newapi", "task JSON has new-api's customId/maskBase64 fields")
            self.settled_by_body = True
            return
        if any(key in raw for key in _TRUEAI_KEYS):
            self.claim("trueai", "task JSON has trueai's TaskInfo fields (isCompleted, …)")
            self.settled_by_body = True
            return
        if (
            "buttons" not in raw
            and raw.get("status") == "SUCCESS"
            and raw.get("action") in CHANGE_PARENT_ACTIONS
        ):
            # Only a finished grid: PLUS's documentation shows describe and shorten
            # results without the field, abridged.
            self.claim("oss", "a finished grid's JSON has no buttons field (Task.java)")
            self.settled_by_body = True
            return
        properties = raw.get("properties")
        if isinstance(properties, Mapping) and "finalZhPrompt" in properties:
            self.claim("plus", "task properties carry finalZhPrompt (midjourney-proxy-plus)")

    def snapshot(self, *, notify_hook: bool) -> ServerInfo:
        dialect = self.dialect
        evidence = tuple(reason for name in _PRECEDENCE for reason in self._claims.get(name, ()))
        routes = self.routes
        return ServerInfo(
            dialect=dialect,
            evidence=evidence,
            action_route=routes.get("action_route"),
            change_route=routes.get("change_route"),
            buttons=self.buttons,
            list_by_condition=routes.get("list_by_condition"),
            list_by_ids=routes.get("list_by_ids"),
            cancel=routes.get("cancel"),
            image_seed=routes.get("image_seed"),
            notify_hook=notify_hook,
            notifications=self.notifications,
            finished_tasks=self.finished_tasks,
        )


def classify_probe(response: Response) -> tuple[bool | None, Dialect | None, str]:
    """A probe's answer: (route present?, the dialect it points at, what was seen).

    Probes are GETs: on a POST-only route a server that has the route answers 405, one
    that lacks it 404. new-api answers both with its web page, which says nothing about
    the route but everything about the server.
    """
    status = response.status
    content = response.content.strip()
    body, _ = try_json(content) if content else (None, False)
    content_type = next(
        (value for key, value in response.headers.items() if key.lower() == "content-type"), ""
    )
    html = "html" in content_type.lower() or (body is None and content[:1] == b"<")
    spring = isinstance(body, Mapping) and body.keys() >= _SPRING_KEYS
    if html and 200 <= status < 300:
        return None, "newapi", "new-api's web page (HTTP 200 text/html), not an API answer"
    if status == 405:
        if spring:
            return True, None, "Spring's 405 JSON"
        if not content:
            return True, "trueai", "an empty 405 (ASP.NET Core)"
        return True, None, "HTTP 405"
    if status == 404:
        if isinstance(body, Mapping) and "code" in body:
            return True, None, "the proxy's own not-found JSON"
        if spring:
            return False, None, "Spring's 404 JSON"
        return False, None, "HTTP 404"
    if isinstance(body, Mapping) and "code" in body:
        return True, None, f"a JSON answer (HTTP {status})"
    return None, None, f"HTTP {status}"


Probe = Callable[[str], Awaitable[tuple[bool | None, Dialect | None, str]]]


async def probe(evidence: Evidence, get: Probe) -> None:
    """GET every path in `PROBES` at once (*get* parses with `classify_probe`); record it.

    Raises:
        mjasync.MJError: the first failure, when every probe failed.
    """
    failures: list[MJError] = []

    async def one(path: str) -> None:
        try:
            present, hint, seen = await get(path)
        except MJError as error:
            failures.append(error)
            return
        key = route_key(path)
        where = f"GET /mj{path}: {seen}"
        if present is not None and key is not None and key not in evidence.routes:
            evidence.route(path, present)
        if hint is not None:
            evidence.claim(hint, where)
        elif path == "/submit/action" and present and seen.startswith("Spring"):
            evidence.claim("plus", f"{where}: a Spring server with /submit/action")

    async with anyio.create_task_group() as group:
        for path in PROBES:
            group.start_soon(one, path)
    if len(failures) == len(PROBES):
        raise failures[0]


def _says_newapi(error: APIError) -> bool:
    """new-api's own refusals: ``{"error": {..., "type": "new_api_error"}}``, task_no_found."""
    body = error.body
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and inner.get("type") == "new_api_error":
            return True
    description = error.description or ""
    return "task_no_found" in description or "task_not_found" in description
