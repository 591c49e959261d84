"""Image inputs (bytes, Path, data URI, http(s) URL) -> validated data URIs or URLs.

Every proxy accepts ``data:<mime>;base64,<data>``; OSS rejects anything else. An input
that must travel as base64 is turned into one, with the MIME type sniffed from the bytes
themselves (a ``.png`` name on a JPEG is common), before anything is sent. A URL stays a
URL wherever the route takes one (the client decides, route by route); where it must be
downloaded, the body is streamed and the read stops as soon as it passes the size cap,
so a hostile or broken host cannot make the client buffer more than the cap.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from ._errors import APIError, InvalidRequestError, RateLimitError, ServerError, TransportError
from ._policy import RetryPolicy
from ._redact import display_url
from ._retry import RequestKind, parse_retry_after, with_retries
from ._transport import AsyncTransport, Request

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageInput",
    "ImageInputs",
    "as_image_list",
    "check_url",
    "fetch_image",
    "is_url",
    "read_image_file",
    "sniff_mime",
    "to_data_uri",
]

ImageInput = bytes | bytearray | memoryview | os.PathLike[str] | str
"""An image: raw bytes, a `pathlib.Path`, a ``data:`` URI, or an ``http(s)://`` URL."""

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""The largest image input a `Client` accepts unless told otherwise (``max_image_bytes``)."""

UrlFetcher = Callable[[str, int, str], Awaitable[bytes]]

_CHUNK = 64 * 1024
# Enough bytes to tell PNG, JPEG, WEBP and GIF apart (WEBP needs 12).
_SNIFF_BYTES = 12


def is_url(image: object) -> bool:
    """Whether *image* is an ``http(s)://`` URL string (the form routes may take as is)."""
    if not isinstance(image, str):
        return False
    head = image.lstrip()[:8].lower()
    return head.startswith(("http://", "https://"))


def check_url(url: str, what: str) -> str:
    """The URL, stripped, once it is a usable http(s) URL; InvalidRequestError otherwise.

    A URL sent as is lands in a prompt or a JSON field: whitespace would split it into
    two prompt words, and a URL without a host is no link.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError as exc:
        msg = f"{what} is not a valid URL: {display_url(text)!r}"
        raise InvalidRequestError(msg) from exc
    if parts.scheme.lower() not in {"http", "https"} or not host:
        msg = f"{what} is not an http(s) URL with a host: {display_url(text)!r}"
        raise InvalidRequestError(msg)
    if any(char.isspace() or ord(char) < 0x20 for char in text):
        msg = f"{what} URL contains whitespace or control characters: {display_url(text)!r}"
        raise InvalidRequestError(msg)
    return text


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


def _read_capped(path: Path, what: str, max_bytes: int) -> bytes:
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            msg = f"{what} file {path} is {size:,} bytes; the limit is {max_bytes:,}"
            raise InvalidRequestError(msg)
        # One byte more than the cap: a file that grew since fstat is still caught.
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        msg = f"{what} file {path} is larger than the limit of {max_bytes:,} bytes"
        raise InvalidRequestError(msg)
    return data


async def read_image_file(path: Path, what: str, max_bytes: int) -> bytes:
    """Read an image file: its size is checked before reading, and never more is read."""
    try:
        return await anyio.to_thread.run_sync(_read_capped, path, what, max_bytes)
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


async def fetch_image(
    transport: AsyncTransport, request: Request, what: str, max_bytes: int
) -> bytes:
    """One streamed GET of an image input, read no further than *max_bytes*.

    A ``Content-Length`` over the cap is refused before the body is read, a body whose
    first bytes are no image is refused at once, and the read stops at the first chunk
    that passes the cap: memory stays within the cap plus one chunk. A 429 or 5xx
    raises `RateLimitError` / `ServerError` (the caller may retry); every other refusal
    is an `InvalidRequestError`.
    """
    where = f"{what} at {display_url(request.url)}"
    async with transport.stream(request) as response:
        status = response.status
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            msg = f"could not download {where}: HTTP 429"
            raise RateLimitError(msg, status=status, retry_after=retry_after)
        if status >= 500:
            raise ServerError(f"could not download {where}: HTTP {status}", status=status)
        if not 200 <= status < 300:
            msg = f"could not download {where}: HTTP {status}"
            raise InvalidRequestError(msg)
        declared = response.headers.get("content-length", "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            msg = f"{where} is {int(declared):,} bytes; the limit is {max_bytes:,}"
            raise InvalidRequestError(msg)
        body = bytearray()
        async for chunk in response.iter_chunks(_CHUNK):
            if len(body) + len(chunk) > max_bytes:
                msg = f"{where} is larger than the limit of {max_bytes:,} bytes"
                raise InvalidRequestError(msg)
            sniffed = len(body) >= _SNIFF_BYTES
            body += chunk
            if not sniffed and len(body) >= _SNIFF_BYTES and sniff_mime(bytes(body[:16])) is None:
                msg = f"{where} is not a PNG, JPEG, WEBP or GIF image"
                raise InvalidRequestError(msg)
        return bytes(body)


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
        data = await read_image_file(path, what, max_bytes)
        return _encode(data, f"{what} file {path}", max_bytes, png_only=png_only)
    if isinstance(image, str):
        text = image.strip()
        if text[:5].lower() == "data:":
            data = _decode_data_uri(text, what)
            return _encode(data, what, max_bytes, png_only=png_only)
        if is_url(text):
            if fetch_url is None:
                msg = f"{what} is a URL, but no downloader is available"
                raise InvalidRequestError(msg)
            url = check_url(text, what)
            data = await fetch_url(url, max_bytes, what)
            return _encode(data, f"{what} at {display_url(url)}", max_bytes, png_only=png_only)
        msg = (
            f"{what} string is neither a data: URI nor an http(s) URL; "
            "pass a pathlib.Path to read a file"
        )
        raise InvalidRequestError(msg)
    kind = type(image).__name__
    msg = f"{what} must be bytes, a pathlib.Path, a data: URI or an http(s) URL, got {kind}"
    raise InvalidRequestError(msg)


def as_image_list(images: object) -> list[object]:
    """One image or an iterable of images, as a list: a str, bytes or path is one image."""
    if isinstance(images, str | bytes | bytearray | memoryview) or hasattr(images, "__fspath__"):
        return [images]
    return list(cast(Iterable[object], images))


class ImageInputs:
    """One client's image inputs: data URIs (URL inputs downloaded) or checked URLs.

    Args:
        transport: the client's transport, for downloads of URL inputs.
        user_agent: the client's User-Agent. The API key is never sent with a download:
            an input URL is someone else's host.
        retry: how a failed download is retried.
        rng: the jitter of those retries.
        max_bytes: the largest image accepted.
        check_open: raises `ClientClosedError` once the client is closed.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        *,
        user_agent: str,
        retry: RetryPolicy,
        rng: random.Random,
        max_bytes: int,
        check_open: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._headers = {"User-Agent": user_agent, "Accept": "image/*"}
        self._retry = retry
        self._rng = rng
        self.max_bytes = max_bytes
        self._check_open = check_open

    async def fetch_url(self, url: str, max_bytes: int, what: str = "image") -> bytes:
        """Download an image input that must travel as base64: streamed, capped, retried."""
        self._check_open()
        request = Request("GET", url, self._headers)

        async def attempt() -> bytes:
            return await fetch_image(self._transport, request, what, max_bytes)

        try:
            return await with_retries(
                self._retry, RequestKind.QUERY, self._rng, attempt, what="an image input download"
            )
        except (TransportError, APIError) as error:
            # Nothing was submitted: an input that cannot be fetched is a bad input.
            msg = f"could not download {what}: {error}"
            raise InvalidRequestError(msg) from error

    async def data_uri(self, image: object, what: str, *, png_only: bool = False) -> str:
        """*image* as a data URI; a URL is downloaded (for routes that need base64)."""
        return await to_data_uri(
            image, what=what, max_bytes=self.max_bytes, fetch_url=self.fetch_url, png_only=png_only
        )

    async def data_uri_or_url(self, image: object, what: str) -> str:
        """*image* as a checked http(s) URL when it is one, else as a data URI."""
        if is_url(image):
            return check_url(cast(str, image), what)
        return await self.data_uri(image, what)

    async def data_uris(self, images: object, what: str) -> list[str]:
        """Every image as a data URI (URLs downloaded), named "*what* 1", "*what* 2"…"""
        items = as_image_list(images)
        return [await self.data_uri(image, f"{what} {i}") for i, image in enumerate(items, 1)]

    async def data_uris_or_urls(self, images: object, what: str) -> list[str]:
        """Every image as a URL (when it is one) or a data URI; nothing is downloaded."""
        items = as_image_list(images)
        return [
            await self.data_uri_or_url(image, f"{what} {i}") for i, image in enumerate(items, 1)
        ]
