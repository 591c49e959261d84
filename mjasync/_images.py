"""Image inputs (bytes, Path, data URI, http(s) URL) -> validated data URIs.

Every proxy accepts ``data:<mime>;base64,<data>``; OSS rejects anything else. So every
input is turned into one, with the MIME type sniffed from the bytes themselves (a
``.png`` name on a JPEG is common), before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from ._errors import InvalidRequestError

__all__ = ["ImageInput", "sniff_mime", "to_data_uri"]

ImageInput = bytes | bytearray | memoryview | os.PathLike[str] | str
"""An image: raw bytes, a `pathlib.Path`, a ``data:`` URI, or an ``http(s)://`` URL."""

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024

UrlFetcher = Callable[[str, int], Awaitable[bytes]]


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type from magic bytes: PNG, JPEG, WEBP or GIF; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def _encode(data: bytes, what: str, max_bytes: int, *, png_only: bool = False) -> str:
    if not data:
        msg = f"{what} is empty"
        raise InvalidRequestError(msg)
    if len(data) > max_bytes:
        msg = f"{what} is {len(data):,} bytes; the limit is {max_bytes:,}"
        raise InvalidRequestError(msg)
    mime = sniff_mime(data)
    if mime is None:
        msg = f"{what} is not a PNG, JPEG, WEBP or GIF image"
        raise InvalidRequestError(msg)
    if png_only and mime != "image/png":
        msg = f"{what} must be a PNG image, got {mime}"
        raise InvalidRequestError(msg)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _decode_data_uri(uri: str, what: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        msg = f"{what} is a data URI but not base64 (expected data:image/...;base64,...)"
        raise InvalidRequestError(msg)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is a data URI whose base64 payload is invalid"
        raise InvalidRequestError(msg) from exc


async def to_data_uri(
    image: object,
    *,
    what: str = "image",
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    fetch_url: UrlFetcher | None = None,
    png_only: bool = False,
) -> str:
    """Turn one image input into a validated data URI.

    Raises:
        mjasync.InvalidRequestError: missing file, empty or oversized data, bytes that
            are no image, or an unsupported input type.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        return _encode(bytes(image), what, max_bytes, png_only=png_only)
    if isinstance(image, os.PathLike):
        path = Path(os.fspath(image))
        try:
            size = (await anyio.Path(path).stat()).st_size
            if size > max_bytes:
                msg = f"{what} file {path} is {size:,} bytes; the limit is {max_bytes:,}"
                raise InvalidRequestError(msg)
            data = await anyio.Path(path).read_bytes()
        except FileNotFoundError as exc:
            msg = f"{what} file not found: {path}"
            raise InvalidRequestError(msg) from exc
        except IsADirectoryError as exc:
            msg = f"{what} path is a directory: {path}"
            raise InvalidRequestError(msg) from exc
        except PermissionError as exc:
            msg = f"{what} file is not readable: {path}"
            raise InvalidRequestError(msg) from exc
        except OSError as exc:
            msg = f"{what} file {path} cannot be read: {exc.strerror or exc}"
            raise InvalidRequestError(msg) from exc
        return _encode(data, f"{what} file {path}", max_bytes, png_only=png_only)
    if isinstance(image, str):
        text = image.strip()
        if text[:5].lower() == "data:":
            data = _decode_data_uri(text, what)
            return _encode(data, what, max_bytes, png_only=png_only)
        if text[:7].lower() == "http://" or text[:8].lower() == "https://":
            if fetch_url is None:
                msg = f"{what} is a URL, but no downloader is available"
                raise InvalidRequestError(msg)
            data = await fetch_url(text, max_bytes)
            return _encode(data, f"{what} at {text}", max_bytes, png_only=png_only)
        msg = (
            f"{what} string is neither a data: URI nor an http(s) URL; "
            "pass a pathlib.Path to read a file"
        )
        raise InvalidRequestError(msg)
    kind = type(image).__name__
    msg = f"{what} must be bytes, a pathlib.Path, a data: URI or an http(s) URL, got {kind}"
    raise InvalidRequestError(msg)
