"""Keeping secrets out of messages, exceptions and logs, and long bodies out of logs.

A server may echo the key back (an error text quoting the header, an HTML page that
prints the request), and a URL may carry credentials (``user:pass@host``, a
``?token=``). Everything mjasync shows a person goes through these helpers first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "display_url",
    "host_of",
    "logged_answer",
    "logged_body",
    "redact_error",
    "redact_text",
    "redact_value",
    "secrets_in_headers",
]

REDACTED = "***"
# Shorter values are not worth redacting, and redacting them would garble every
# message that happens to contain those letters.
_MIN_SECRET = 4
_SENSITIVE_HEADER = re.compile(r"authorization|secret|token|key|cookie|password", re.IGNORECASE)
_TOKEN_PARAM = re.compile(
    r"(?i)\b(token|key|secret|signature|password|api[-_]?key)=([^&\s\"'<>#]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_LOG_BODY = 400
_DATA_URI = re.compile(r"^data:([\w.+/-]*);base64,", re.IGNORECASE)


def secrets_in_headers(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The values of credential-looking headers, and the key inside ``Bearer <key>``."""
    found: list[str] = []
    for name, value in headers.items():
        if not _SENSITIVE_HEADER.search(name) or not value:
            continue
        found.append(value)
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in {"bearer", "basic", "token"}:
            found.append(rest.strip())
    return tuple(dict.fromkeys(s for s in found if len(s) >= _MIN_SECRET))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every secret, ``token=...`` value and ``Bearer <token>`` replaced."""
    # Longest first, so "Bearer KEY" goes as a whole before "KEY" alone.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a decoded JSON value (or text) with `redact_text` applied to every string."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            redact_text(str(k), secrets) if isinstance(k, str) else k: redact_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item, secrets) for item in value)
    return value


def redact_error(error: BaseException, secrets: Iterable[str] = ()) -> None:
    """Redact, in place, the message, args and every text or body attribute of *error*.

    Task snapshots (``TaskError.task``) are left alone: they are the server's record of
    a task, already parsed, and carry no request headers.
    """
    secrets = tuple(secrets)
    error.args = tuple(redact_value(arg, secrets) for arg in error.args)
    for name, value in list(vars(error).items()):
        if isinstance(value, str | Mapping | list | tuple):
            setattr(error, name, redact_value(value, secrets))
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        error.__notes__ = [redact_text(note, secrets) for note in notes]


def display_url(url: str) -> str:
    """*url* as messages show it: no ``user:password@``, no query string, no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url.split("?", 1)[0])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{REDACTED}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def host_of(url: str) -> str:
    """``host:port`` of *url* as written (no credentials); *url* itself when it has none."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return url
    return netloc.rpartition("@")[2] or url


def _summary(value: object) -> object:
    """*value* for a debug log: data URIs shortened to their type and size."""
    if isinstance(value, str):
        match = _DATA_URI.match(value)
        if match:
            return f"<data:{match.group(1) or '?'};base64, {len(value) - match.end():,} chars>"
        if len(value) > 200:
            return value[:200] + "…"
        return value
    if isinstance(value, Mapping):
        return {key: _summary(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_summary(item) for item in value]
    return value


def logged_body(body: object, secrets: Iterable[str]) -> str:
    """A request body as a debug log shows it: redacted, images summarised, cut short."""
    if body is None:
        return ""
    text = json.dumps(_summary(body), ensure_ascii=False, default=str)
    if len(text) > _LOG_BODY:
        text = text[:_LOG_BODY] + "…"
    return " " + redact_text(text, secrets)


def logged_answer(content: bytes, secrets: Iterable[str]) -> str:
    """A response body as a debug log shows it: one line, redacted, cut short."""
    if not content:
        return ""
    text = " ".join(content.decode("utf-8", "replace").split())
    if len(text) > _LOG_BODY:
        text = text[:_LOG_BODY] + "…"
    return ": " + redact_text(text, secrets)
