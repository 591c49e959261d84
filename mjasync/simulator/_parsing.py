"""Binding request bodies the way each server's framework does, and decoding images."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
# trueai Dto/DataUrl.cs Parse: an unanchored match, anything before ";base64," is the type.
TRUEAI_DATA_URI = re.compile(r"data:(?P<type>.+?);base64,(?P<data>.+)", re.DOTALL)


class BadRequest(Exception):
    """A submit that is rejected with a business code (4, 3, 24...)."""

    def __init__(
        self,
        code: int,
        description: str,
        *,
        properties: dict[str, Any] | None = None,
        trueai_status: int = 200,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.properties = properties
        self.trueai_status = trueai_status


class Unreadable(Exception):
    """A body the server's framework cannot bind to the route's DTO."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ServerFault(Exception):
    """An exception the server's code does not catch (novicezk: Spring's 500 answer)."""


class LogicError(Exception):
    """trueai's LogicException: code 4 on /imagine, ``Result.Fail`` JSON elsewhere."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        # Spring (@RequestBody) and ASP.NET ([FromBody]) both refuse a missing body.
        raise Unreadable("A non-empty request body is required.")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        first = raw.strip()[:1].decode("latin-1")
        raise Unreadable(
            f"'{first}' is an invalid start of a value. Path: $ | LineNumber: 0 | "
            "BytePositionInLine: 0."
        ) from exc
    if not isinstance(data, dict):
        raise Unreadable("The JSON value could not be converted to the request DTO. Path: $")
    return data


def text_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value.strip() if isinstance(value, str) else ""


def java_string(body: dict[str, Any], key: str) -> str | None:
    # Jackson coerces a scalar to String; an object or array cannot be bound (HTTP 400).
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise Unreadable(f"Cannot deserialize value of type `java.lang.String` for {key}")


def java_integer(body: dict[str, Any], key: str) -> int | None:
    # Jackson: Integer from a number (a float is truncated) or a numeric string.
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise Unreadable(f"Cannot coerce boolean to `java.lang.Integer` for {key}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise Unreadable(f"Cannot deserialize value of type `java.lang.Integer` from {value!r}")


def java_enum(body: dict[str, Any], key: str, names: tuple[str, ...]) -> str | None:
    # Jackson EnumDeserializer: the exact constant name, or its ordinal; anything else is
    # HTTP 400.
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    raise Unreadable(f"Cannot deserialize value of type enum from {value!r}")


def decode_data_uri(value: object) -> tuple[bytes, str] | None:
    if not isinstance(value, str):
        return None
    match = DATA_URI.match(value.strip())
    if match is None:
        return None
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return data, match["mime"].lower()


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


class NotAnImage(Exception):
    pass


def trueai_data_url(config_upload_base64: bool, value: object) -> tuple[bytes, str] | str | None:
    """trueai Dto/DataUrl.cs Parse: ``None`` (blank), a URL, or (bytes, mime).

    Anything starting with "http" is a URL; base64 is refused when operators disabled
    uploads (LogicException "disabled upload base64"); a data URI or bare base64 (assumed
    image/png) is decoded strictly (Convert.FromBase64String).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise NotAnImage
    if value.lower().startswith("http"):
        return value
    if not config_upload_base64:
        raise NotAnImage
    match = TRUEAI_DATA_URI.search(value)
    mime, data = (match["type"], match["data"]) if match else ("image/png", value)
    try:
        return base64.b64decode(data, validate=True), mime
    except (binascii.Error, ValueError) as exc:
        raise NotAnImage from exc
