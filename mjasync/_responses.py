"""Response -> decoded body or the right exception: body first, then HTTP status.

The dialects report errors in five shapes (reference §4): HTTP 200 with a business
``code``; trueai's 404/400 with a submit-shaped JSON body; 401/403/429 with text or
nothing; new-api's ``{description, type, code}``; trueai's ``{success: false, code: -1,
message}``. Each is recognised by its body before its status is consulted, because the
body carries the better reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._errors import (
    APIError,
    AuthenticationError,
    BannedPromptError,
    DecodeError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ServerError,
    SubmitRejectedError,
    TaskNotFoundError,
    body_preview,
)
from ._models import Submission
from ._retry import parse_retry_after
from ._serde import decode_submission, parse_int
from ._transport import Response

__all__ = ["ACCEPTED_CODES", "read_body", "submission_or_raise"]

ACCEPTED_CODES = frozenset({1, 22})
MODAL_CODE = 21
_QUEUE_FULL_MARKERS = ("队列已满", "queue full", "queue is full", "队列数已达上限")


def _parse(response: Response) -> object:
    content = response.content.strip()
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return response.text


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
    reason = description or "no description"
    message = f"{where}: {reason} (code {code}, HTTP {status})"
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
    not_found_text = "task_no_found" in (description or "")
    if task_id is not None and (code == 3 or not_found_text):
        return TaskNotFoundError(
            f"{where}: task {task_id} not found (code {code}, HTTP {status})",
            task_id=task_id,
            **common,
        )
    return SubmitRejectedError(message, properties=properties, **common)


def read_body(response: Response, where: str, *, task_id: str | None = None) -> object:
    """The decoded JSON body of a successful response, or raise the mapped error.

    Returns None for an empty 200/204 body; the caller decides what that means.
    ``task_id`` marks a per-task query, whose not-found answers raise TaskNotFoundError.
    """
    status = response.status
    body = _parse(response)
    if 200 <= status < 300:
        if isinstance(body, str):
            msg = f"{where}: the server sent a body that is not JSON: {body_preview(body)}"
            raise DecodeError(msg, status=status, body=body)
        if isinstance(body, Mapping) and body.get("success") is False:
            # trueai's Result.Fail shape can arrive with HTTP 200 too.
            code = _code_of(body)
            raise _error_for_code(
                where, status, code if code is not None else -1, _text_of(body), body, task_id=None
            )
        return body
    description = _text_of(body)
    code = _code_of(body)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    common: dict[str, Any] = {"status": status, "code": code, "description": description}
    reason = description or "no description"
    if status in {401, 403}:
        msg = f"{where}: authentication failed: {reason} (HTTP {status})"
        raise AuthenticationError(msg, body=body, **common)
    if status == 429:
        msg = f"{where}: rate limited: {reason} (HTTP 429)"
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
        msg = f"{where}: server error: {reason} (HTTP {status})"
        raise ServerError(msg, body=body, **common)
    if status in {404, 405}:
        if task_id is not None and status == 404:
            msg = f"{where}: task {task_id} not found (HTTP 404)"
            raise TaskNotFoundError(msg, task_id=task_id, body=body, **common)
        msg = f"{where}: not found on this server (HTTP {status})"
        raise NotFoundError(msg, body=body, **common)
    msg = f"{where}: request failed: {reason} (HTTP {status})"
    raise APIError(msg, body=body, **common)


def submission_or_raise(
    body: object, where: str, status: int = 200, *, task_id: str | None = None
) -> Submission:
    """Decode a submit answer; accepted (1, 22) and modal (21) return, the rest raise.

    ``task_id`` marks a per-task query (image-seed, cancel): code 3 raises TaskNotFoundError.
    """
    if body is None:
        msg = f"{where}: the server answered with an empty body"
        raise DecodeError(msg, status=status, body=body)
    submission = decode_submission(body)
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
