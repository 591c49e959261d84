"""Response -> decoded body or the right exception: body first, then HTTP status.

The dialects report errors in these shapes (reference §4, and the servers' source):

* HTTP 200 with a business ``code`` (every dialect);
* trueai's 404/400 with a submit-shaped JSON body (``SubmitController.cs``);
* trueai's ``{success: false, code: -1, message}`` (``CustomLogicExceptionFilterAttribute.cs``);
* new-api's relay errors ``{description, type: "upstream_error", code}`` at 400/429
  (``controller/relay.go``), and its own ``{error: {message, type: "new_api_error"}}``
  from middleware (``middleware/distributor.go``, ``middleware/auth.go``);
* 401/403/429 with text or nothing (novicezk ``ApiAuthorizeInterceptor.java``, trueai
  ``SimpleAuthMiddleware.cs`` and ``RateLimitingMiddleware.cs``);
* no route at all: Spring's ``{timestamp, status: 404, error, path}``, ASP.NET's empty
  404, new-api's web page served with HTTP 200 (``router/web-router.go``).

Each is recognised by its body before its status is consulted, because the body
carries the better reason. Messages name the whole URL (``where``), show Chinese texts
with their English (`mjasync._glossary`), and never contain the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._auth_shapes import auth_shape, is_newapi_error
from ._errors import (
    APIError,
    AuthenticationError,
    BannedPromptError,
    DecodeError,
    QueueFullError,
    RateLimitError,
    RouteNotFoundError,
    ServerError,
    SubmitRejectedError,
    TaskNotFoundError,
    body_preview,
)
from ._glossary import with_english
from ._json import try_json
from ._models import Submission
from ._retry import parse_retry_after
from ._serde import decode_submission, parse_int
from ._transport import Response

__all__ = [
    "ACCEPTED_CODES",
    "ROUTE_MISSING_STATUSES",
    "as_route_not_found",
    "explain_auth",
    "read_body",
    "route_missing",
    "submission_or_raise",
]

ACCEPTED_CODES = frozenset({1, 22})
MODAL_CODE = 21
# Queue full (novicezk DiscordInstanceImpl.java code 23 "队列已满，请稍后尝试"; trueai
# code 9 "提交失败，队列已满，请稍后重试") and trueai's per-key caps, which SubmitController.cs
# raises as code 4 on imagine and as {success:false, code:-1} elsewhere: all "not now".
_QUEUE_FULL_MARKERS = (
    "队列已满",
    "queue full",
    "queue is full",
    "队列数已达上限",
    "并发数已达上限",
)
# new-api answers an unknown parent on action/modal with code 4 "task_not_found" and an
# unknown id on fetch/image-seed with "task_no_found" (relay/mjproxy_handler.go).
_TASK_NOT_FOUND_MARKERS = ("task_not_found", "task_no_found")
# Code 3 (NOT_FOUND) also means things other than a missing task: novicezk
# TaskServiceImpl.java "无可用的账号实例" / "账号不可用: <id>"; trueai TaskController.cs
# "未找到 seed" and SubmitController.cs "个性化配置不存在", "未找到 Shortened prompts".
_CODE_3_NOT_A_TASK = (
    "无可用的账号实例",
    "账号不可用",
    "未找到 seed",
    "个性化配置不存在",
    "未找到 Shortened prompts",
    "实例不存在",
)
ROUTE_MISSING_STATUSES = frozenset({404, 405, 501})
"""Statuses that, without the proxy's own JSON, say the server has no such route."""
# Statuses whose HTML page still says something about the request itself rather than a
# missing route (nginx answers a too-large image with a 413 page).
_NOT_A_ROUTE_STATUSES = frozenset({401, 403, 407, 408, 413, 414, 429, 431})
_MJ_PATH = re.compile(r"^(.*?)(/mj(?:[-/].*)?)$")
_AUTH_SENT_AS = {
    "bearer": "Authorization: Bearer <key>",
    "authorization": "Authorization: <key>",
    "mj-api-secret": "mj-api-secret: <key>",
}


def _parse(response: Response) -> tuple[object, bool]:
    """The body decoded as JSON, or its text; and whether it was JSON."""
    content = response.content.strip()
    if not content:
        return None, False
    body, parsed = try_json(content)
    return (body, True) if parsed else (response.text, False)


def _header(response: Response, name: str) -> str:
    for key, value in response.headers.items():
        if key.lower() == name:
            return value
    return ""


def _is_html(response: Response, body: object) -> bool:
    if "html" in _header(response, "content-type").lower():
        return True
    return isinstance(body, str) and body.lstrip()[:1] == "<"


def _looks_like_json(body: str) -> bool:
    # A body that starts like JSON but does not parse is a broken proxy answer (maybe
    # for a task that now exists), not a page from something that is not the proxy.
    return body.lstrip()[:1] in {"{", "[", '"'}


def _text_of(body: object) -> str | None:
    if isinstance(body, Mapping):
        for key in ("description", "message", "msg", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, Mapping):
                nested = _text_of(value)
                if nested:
                    return nested
        return None
    if isinstance(body, str) and body.strip():
        return " ".join(body.split())[:300]
    return None


def _code_of(body: object) -> int | None:
    if isinstance(body, Mapping):
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        if isinstance(code, str):
            return parse_int(code)
    return None


def _is_queue_full(code: int | None, description: str | None) -> bool:
    if code == 23:
        return True
    text = (description or "").casefold()
    return any(marker in text for marker in _QUEUE_FULL_MARKERS)


def _is_task_not_found(code: int, description: str | None) -> bool:
    text = description or ""
    if any(marker in text for marker in _TASK_NOT_FOUND_MARKERS):
        return True
    return code == 3 and not any(marker in text for marker in _CODE_3_NOT_A_TASK)


def _reason(description: str | None) -> str:
    return with_english(description) if description else "no description"


def _error_for_code(
    where: str,
    status: int,
    code: int,
    description: str | None,
    body: object,
    *,
    task_id: str | None,
    retry_after: float | None = None,
) -> APIError:
    properties: dict[str, Any] = {}
    if isinstance(body, Mapping) and isinstance(body.get("properties"), Mapping):
        properties = dict(body["properties"])
    message = f"{where}: {_reason(description)} (code {code}, HTTP {status})"
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "description": description,
        "body": body,
    }
    if code == 30 or status == 429:
        return RateLimitError(message, retry_after=retry_after, **common)
    if _is_queue_full(code, description):
        return QueueFullError(message, properties=properties, **common)
    if code == 24:
        word = properties.get("bannedWord")
        if word:
            message = f"{where}: banned word {word!r} in prompt (code 24, HTTP {status})"
        return BannedPromptError(message, properties=properties, **common)
    if task_id is not None and _is_task_not_found(code, description):
        return TaskNotFoundError(
            f"{where}: task {task_id} not found: {_reason(description)} "
            f"(code {code}, HTTP {status})",
            task_id=task_id,
            **common,
        )
    return SubmitRejectedError(message, properties=properties, **common)


def _route_not_found(where: str, status: int, body: object, *, html: bool) -> RouteNotFoundError:
    method, _, url = where.partition(" ")
    if not url:
        url = where
    base, route = url, ""
    parts = urlsplit(url)
    match = _MJ_PATH.match(parts.path)
    if parts.netloc and match:
        base = f"{parts.scheme}://{parts.netloc}{match.group(1)}"
        route = match.group(2)
    if body is None:
        what = "an empty answer"
    elif html:
        what = "a web page instead of JSON"
    elif isinstance(body, str):
        what = f"text instead of JSON: {body_preview(body)[:80]}"
    else:
        what = "an error page that is not the proxy's"
    check = f"check the base URL (base_url= or MJ_BASE_URL; here {base})"
    if route:
        check += f" and whether this server supports {method} {route}".rstrip()
    msg = (
        f"{where}: this server has no such route (HTTP {status}, {what}); {check} "
        "(relays such as new-api serve only some of the routes)"
    )
    return RouteNotFoundError(msg, url=url, status=status, code=None, body=body)


def _auth_message(
    where: str,
    status: int,
    description: str | None,
    body: object,
    auth_style: str | None,
    *,
    known: bool,
) -> tuple[str, tuple[str, ...]]:
    shape, reads = auth_shape(status, body)
    said = f": {with_english(description)}" if description else ", empty body"
    parts = [f"{where}: authentication failed (HTTP {status}{said})"]
    if not known:
        suggested = reads[:1]
    elif auth_style is None:
        parts.append("no API key was sent (pass api_key= or set MJ_API_KEY)")
        suggested = reads[:1]
    else:
        sent = _AUTH_SENT_AS.get(auth_style, auth_style)
        parts.append(f'the key was sent as "{sent}" (auth="{auth_style}")')
        suggested = () if auth_style in reads else reads
    if shape:
        parts.append(shape)
    if suggested:
        parts.append("try " + " or ".join(f'auth="{style}"' for style in suggested))
    elif known and auth_style is not None and reads:
        parts.append("the key went where this server looks for it, so check the key itself")
    return "; ".join(parts), suggested


def explain_auth(error: AuthenticationError, *, where: str, auth_style: str | None) -> None:
    """Say, in *error*, how the key was sent and which other ``auth=`` styles to try.

    *auth_style* is how the client sent the key, or None when it sent none. Only the
    header's name goes into the message, never its value.
    """
    status = error.status or 401
    message, suggested = _auth_message(
        where, status, error.description, error.body, auth_style, known=True
    )
    error.message = message
    error.args = (message,)
    error.auth_style = auth_style
    error.auth_header = (
        None
        if auth_style is None
        else ("mj-api-secret" if auth_style == "mj-api-secret" else "Authorization")
    )
    error.suggested_auth = suggested


def read_body(response: Response, where: str, *, task_id: str | None = None) -> object:
    """The decoded JSON body of a successful response, or raise the mapped error.

    Returns None for an empty 200/204 body; the caller decides what that means.
    ``task_id`` marks a request about one task (a query on it, or an action or modal
    on it), whose not-found answers raise TaskNotFoundError. ``where`` is
    ``"METHOD URL"``; it starts every message.
    """
    status = response.status
    body, is_json = _parse(response)
    html = not is_json and _is_html(response, body)
    if 200 <= status < 300:
        if isinstance(body, str) and not is_json:
            if _looks_like_json(body) and not html:
                msg = f"{where}: the server sent malformed JSON: {body_preview(body)}"
                raise DecodeError(msg, status=status, body=body)
            # new-api's router/web-router.go serves its web UI for every unknown path.
            raise _route_not_found(where, status, body, html=html)
        if isinstance(body, Mapping) and body.get("success") is False:
            # trueai's Result.Fail shape can arrive with HTTP 200 too.
            code = _code_of(body)
            raise _error_for_code(
                where,
                status,
                code if code is not None else -1,
                _text_of(body),
                body,
                task_id=task_id,
            )
        return body
    description = _text_of(body)
    code = _code_of(body)
    retry_after = parse_retry_after(_header(response, "retry-after") or None)
    common: dict[str, Any] = {"status": status, "code": code, "description": description}
    if status == 403 and body is None:
        # trueai RateLimitingMiddleware.cs: its IP rate limiter (the "black rate" rules)
        # and its IP blacklists answer a bare 403, nothing written; its auth refusals
        # always carry a text (SimpleAuthMiddleware.cs), so an empty 403 is the limiter.
        msg = (
            f"{where}: refused with an empty HTTP 403, which is how trueai's IP rate "
            "limiter (or IP blacklist) refuses; wait before sending more"
        )
        raise RateLimitError(msg, retry_after=retry_after, body=body, **common)
    if status in {401, 403}:
        msg, suggested = _auth_message(where, status, description, body, None, known=False)
        raise AuthenticationError(msg, suggested_auth=suggested, body=body, **common)
    if status == 429:
        msg = f"{where}: rate limited: {_reason(description)} (HTTP 429)"
        raise RateLimitError(msg, retry_after=retry_after, body=body, **common)
    if code is not None:
        error = _error_for_code(
            where, status, code, description, body, task_id=task_id, retry_after=retry_after
        )
        # A 5xx is the server failing, not a verdict on the request, unless the body
        # says "not now" (queue full, rate limited): keep it a retryable ServerError.
        if status < 500 or isinstance(error, RateLimitError | QueueFullError):
            raise error
    if status >= 500:
        msg = f"{where}: server error: {_reason(description)} (HTTP {status})"
        raise ServerError(msg, body=body, **common)
    if status in ROUTE_MISSING_STATUSES:
        # Not the proxy's JSON (that has a code, handled above): the route is missing.
        # (A bare 501 is a ServerError above: it is retried before it counts as missing.)
        raise _route_not_found(where, status, body, html=html)
    if html and status not in _NOT_A_ROUTE_STATUSES:
        raise _route_not_found(where, status, body, html=html)
    if is_newapi_error(body):
        # new-api's distributor refuses what it cannot relay (a customId it cannot map:
        # "unknown_action:MJ::...") with 400 before any upstream sees it.
        msg = f"{where}: refused by the relay: {_reason(description)} (HTTP {status})"
        raise SubmitRejectedError(msg, body=body, **common)
    msg = f"{where}: request failed: {_reason(description)} (HTTP {status})"
    raise APIError(msg, body=body, **common)


def as_route_not_found(error: APIError, where: str) -> RouteNotFoundError:
    """A `RouteNotFoundError` for an answer `route_missing` reads as "no such route"."""
    if isinstance(error, RouteNotFoundError):
        return error
    status = error.status if error.status is not None else 404
    return _route_not_found(where, status, error.body, html=False)


def route_missing(error: APIError) -> bool:
    """Does *error* say the server lacks the route (so another route may be tried)?

    A `RouteNotFoundError`, or any answer with a route-missing status (a 501 after its
    retries, a proxy's own JSON 404/405) that is not about an unknown task.
    """
    if isinstance(error, RouteNotFoundError):
        return True
    if isinstance(error, TaskNotFoundError):
        return False
    return error.status in ROUTE_MISSING_STATUSES


def submission_or_raise(
    body: object, where: str, status: int = 200, *, task_id: str | None = None
) -> Submission:
    """Decode a submit answer; accepted (1, 22) and modal (21) return, the rest raise.

    ``task_id`` marks a request about one task (image-seed, cancel, action, modal): a
    not-found code raises TaskNotFoundError naming it.
    """
    if body is None:
        msg = f"{where}: the server answered with an empty body"
        raise DecodeError(msg, status=status, body=body)
    failure: DecodeError | None = None
    try:
        submission = decode_submission(body)
    except DecodeError as exc:
        failure = DecodeError(f"{where}: {exc.message}", status=status, body=body)
    if failure is not None:
        raise failure  # outside the except block: one error, not a chain of two
    if submission.code in ACCEPTED_CODES or submission.code == MODAL_CODE:
        if submission.task_id is None:
            msg = (
                f"{where}: accepted (code {submission.code}) but no task id in {body_preview(body)}"
            )
            raise DecodeError(msg, status=status, code=submission.code, body=body)
        return submission
    raise _error_for_code(
        where, status, submission.code, submission.description or None, body, task_id=task_id
    )
