"""The notifyHook side of a client: its settings, token check, size cap and parsing.

Proxies sign nothing (reference §8): the only proof a callback came from the proxy we
submitted to is the secret token we put in the hook URL (`HookSettings`). A notification
is only a hint; the poller decides what it changes (and whether to trust a final one).
This is the one module that imports ``aiohttp.web``, and only inside `aiohttp_handler`,
so importing mjasync does not load the server side.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from ._errors import DecodeError, InvalidRequestError
from ._json import decode_json
from ._models import Task
from ._serde import decode_task

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "MAX_NOTIFICATION_BYTES",
    "HookSettings",
    "NotificationBody",
    "NotificationResult",
    "aiohttp_handler",
    "check_token",
    "parse_notification",
    "read_notification",
]

MAX_NOTIFICATION_BYTES = 1 << 20
"""The largest notification body accepted; trueai sends its whole task record, ~10 KB."""

NotificationBody = bytes | bytearray | memoryview | str | Mapping[str, Any]
"""A notification as received: the raw body, or JSON a framework already decoded."""


@attrs.frozen
class NotificationResult:
    """What `Client.handle_notification` made of one notification.

    ``status`` is the HTTP status to answer with: 200 accepted, 400 not a task,
    401 no token, 403 wrong token, 413 too large. ``task`` is the parsed snapshot of an
    accepted notification; ``woke`` is True when it named a task someone awaits.
    """

    status: int
    reason: str = ""
    task: Task | None = None
    woke: bool = False

    @property
    def accepted(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


class HookSettings:
    """A client's notifyHook: the URL sent with every submit, its token, and trust.

    Args:
        hook: the public URL of the app's webhook route, or None (no hook is sent).
        token: the secret that URL carries (default: 32 random bytes, url-safe); every
            process of one app must share it.
        trust: resolve waiters from a final notification without one confirming fetch.

    Raises:
        mjasync.InvalidRequestError: *hook* is not an http(s) URL.
    """

    def __init__(self, hook: str | None, token: str | None, *, trust: bool) -> None:
        if hook is not None and urlsplit(hook).scheme not in {"http", "https"}:
            msg = f"notify_hook must be an http(s) URL, got {hook!r}"
            raise InvalidRequestError(msg)
        self.token = token or secrets.token_urlsafe(32)
        self.url = _with_token(hook, self.token) if hook is not None else None
        self.trust = trust

    def check(self, given: str | None) -> NotificationResult | None:
        """A refusal for a missing (401) or wrong (403) *given* token; None when it matches."""
        return check_token(self.token, given)


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_token(expected: str, given: str | None) -> NotificationResult | None:
    """A refusal for a missing (401) or wrong (403) token; None when it matches."""
    if not given:
        return NotificationResult(401, "missing token")
    # compare_digest on bytes: it refuses non-ASCII str, and timing must not leak length.
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return NotificationResult(403, "wrong token")
    return None


def read_notification(
    body: NotificationBody, *, token: str | None, expected: str, max_bytes: int
) -> NotificationResult:
    """Check the token first, then the size, then parse the task; nothing else happens."""
    refused = check_token(expected, token)
    if refused is not None:
        return refused
    return parse_notification(body, max_bytes=max_bytes)


def parse_notification(body: NotificationBody, *, max_bytes: int) -> NotificationResult:
    """`read_notification` after the token was checked: the size, then the task."""
    if type(body) is bytes:
        if len(body) > max_bytes:
            return NotificationResult(413, f"body larger than {max_bytes} bytes")
        try:
            data: object = decode_json(body)
        except DecodeError:
            return NotificationResult(400, "body is not JSON")
    elif isinstance(body, Mapping):
        data = body
    else:
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if len(raw) > max_bytes:
            return NotificationResult(413, f"body larger than {max_bytes} bytes")
        try:
            data = decode_json(raw)
        except DecodeError:
            return NotificationResult(400, "body is not JSON")
    try:
        task = decode_task(data)
    except DecodeError:
        return NotificationResult(400, "body is not a task")
    return NotificationResult(200, "accepted", task)


Accept = Callable[[bytes, int], NotificationResult]


def aiohttp_handler(
    accept: Accept,
    expected: Callable[[], str],
    max_bytes: int = MAX_NOTIFICATION_BYTES,
    *,
    refused: Callable[[NotificationResult], object] | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp request handler that feeds ``accept(body, max_bytes)``.

    The token is compared once, here, before the body is read (a refused request gets
    401/403 and nothing is buffered); the body is read with a hard cap. *accept* gets
    only bodies that carried the right token; *refused* sees each refusal.
    """
    from aiohttp import web

    async def webhook_handler(request: web.Request) -> web.StreamResponse:
        token = request.query.get("token")
        refusal = check_token(expected(), token)
        if refusal is not None:
            if refused is not None:
                refused(refusal)
            return web.Response(status=refusal.status, text=refusal.reason)
        length = request.content_length
        if length is not None and length > max_bytes:
            return web.Response(status=413, text=f"body larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > max_bytes:
                return web.Response(status=413, text=f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
        result = accept(chunks[0] if len(chunks) == 1 else b"".join(chunks), max_bytes)
        return web.Response(status=result.status, text=result.reason)

    return webhook_handler
