"""The one place mjasync parses JSON, with orjson when the ``speedups`` extra is installed.

Every body (submit answers, poll answers, webhook callbacks, bus messages, error pages)
goes through `try_json` or `decode_json`; whichever parser runs, the result is what
``json.loads`` gives, and nothing but `DecodeError` ever escapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from ._errors import DecodeError, body_preview

__all__ = ["JsonParser", "decode_json", "json_parser", "try_json", "use_json_parser"]

# The `speedups` extra: orjson parses the poller's batch answers and webhook bodies 2-3x
# faster. It must give exactly what json.loads gives, so it is tried first and json.loads
# decides everything orjson refuses (NaN and Infinity, a UTF-8 BOM, lone surrogates,
# non-UTF-8 bytes): then the body parses, or fails, as it would without orjson.
_orjson_loads: Callable[[bytes | str], Any] | None
try:
    import orjson
except ImportError:  # pragma: no cover - CI runs with the extra, and forces the fallback
    _orjson_loads = None
else:
    _orjson_loads = orjson.loads

JsonParser = Literal["orjson", "json"]
"""The parser behind `try_json`: orjson (the ``speedups`` extra) or the stdlib's json."""

_fast_loads: Callable[[bytes | str], Any] | None = _orjson_loads
# orjson turns an integer past 64 bits into a float; json.loads keeps it an int. A run of
# 20 digits, or a minus sign and 19, is the only way to write one, so a body with such a
# run goes to json.loads. Every digit becomes '0', then two finds: linear passes at
# memory speed (a regex is 20x slower on a miss). A false alarm (a string holding 20
# digits in a row) only costs the stdlib's speed; '-' stays apart, so UUIDs, whose
# digit groups a '-' joins, raise none.
_WIDE_RUN = 20
_DIGITS = bytes.maketrans(b"123456789", b"0" * 9)
_STR_DIGITS = str.maketrans(dict.fromkeys("123456789", "0"))
_WIDE_BYTES = (b"0" * _WIDE_RUN, b"-" + b"0" * (_WIDE_RUN - 1))
_WIDE_STR = ("0" * _WIDE_RUN, "-" + "0" * (_WIDE_RUN - 1))


def json_parser() -> JsonParser:
    """Which parser `try_json` uses now."""
    return "orjson" if _fast_loads is not None else "json"


def use_json_parser(parser: str) -> None:
    """Parse with *parser* (``"orjson"`` or ``"json"``) from now on.

    For tests and benchmarks, which compare the two; the default is orjson when the
    ``speedups`` extra is installed.

    Raises:
        ValueError: an unknown parser, or orjson when it is not installed.
    """
    global _fast_loads
    if parser not in {"orjson", "json"}:
        msg = f"parser must be 'orjson' or 'json', got {parser!r}"
        raise ValueError(msg)
    if parser == "orjson" and _orjson_loads is None:
        msg = "orjson is not installed (pip install 'mjasync[speedups]')"
        raise ValueError(msg)
    _fast_loads = _orjson_loads if parser == "orjson" else None


def _has_wide_int(content: bytes | str) -> bool:
    if isinstance(content, str):
        text = content.translate(_STR_DIGITS)
        return _WIDE_STR[0] in text or _WIDE_STR[1] in text
    digits = content.translate(_DIGITS)
    return _WIDE_BYTES[0] in digits or _WIDE_BYTES[1] in digits


def try_json(content: bytes | str) -> tuple[Any, bool]:
    """``(value, True)`` for JSON text, ``(None, False)`` for anything else.

    The one place mjasync parses JSON: neither ValueError nor RecursionError (a body
    nested too deep) ever escapes. With the ``speedups`` extra installed, orjson parses
    and the stdlib's json decides whatever orjson refuses, so the result is the same.
    """
    fast = _fast_loads
    if fast is not None and not _has_wide_int(content):
        try:
            return fast(content), True
        except ValueError:  # orjson.JSONDecodeError; json.loads decides below
            pass
    try:
        return json.loads(content), True
    except (ValueError, RecursionError):
        return None, False


def decode_json(content: bytes) -> Any:
    """Parse a body as JSON; DecodeError (never ValueError) when it is not JSON."""
    value, parsed = try_json(content)
    if not parsed:
        preview = content[:200].decode("utf-8", "replace")
        msg = f"the server sent a body that is not JSON: {body_preview(preview)}"
        raise DecodeError(msg, body=preview)
    return value
