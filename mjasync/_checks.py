"""Checks on what a caller passes, made before anything is sent.

Each raises `InvalidRequestError` with a message that names the argument, so a bad
input never costs a request (let alone a paid submit).
"""

from __future__ import annotations

from ._errors import InvalidRequestError

__all__ = ["check_timeout", "require_text", "require_utf8"]


def require_text(value: object, what: str) -> str:
    """*value* when it is a non-blank string that can be sent as UTF-8."""
    if not isinstance(value, str) or not value.strip():
        msg = f"{what} must be a non-empty string"
        raise InvalidRequestError(msg)
    require_utf8(value, what)
    return value


def require_utf8(value: str, what: str) -> None:
    """Refuse text that cannot be sent as UTF-8 (lone surrogates, e.g. from bad decoding)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end]
        position = exc.start
    else:
        return
    msg = (
        f"{what} is not valid Unicode text: it contains a lone surrogate "
        f"({bad!a} at position {position}), which cannot be sent as UTF-8"
    )
    raise InvalidRequestError(msg)


def check_timeout(timeout: float | None) -> None:
    """A wait's timeout: seconds >= 0, or None for no limit."""
    if timeout is not None and not timeout >= 0:
        msg = f"timeout must be >= 0 seconds or None, got {timeout!r}"
        raise InvalidRequestError(msg)
