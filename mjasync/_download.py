"""Downloading a finished task's image: streamed, validated, atomically renamed.

Result URLs expire (Discord CDN links last about a day and no proxy can refresh them),
so the image is worth fetching the moment a task succeeds, and a half-written file
must never be mistaken for a result: the body is streamed to a hidden temporary file
in the target directory, checked (status, ``image/*`` type, size cap, magic bytes and
the format's end marker) and only then renamed over the final name. Every failure,
cancellation included, removes the temporary file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

from ._errors import (
    APIError,
    AuthenticationError,
    DecodeError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ._images import sniff_mime
from ._models import Task, TaskStatus
from ._retry import RequestKind, RetryPolicy, parse_retry_after, with_retries
from ._transport import AsyncTransport, Request

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "download_image",
    "image_kind",
    "is_complete_image",
    "same_origin",
]

logger = logging.getLogger("mjasync")

DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024

_SUFFIX_BY_TYPE = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_KIND_BY_SUFFIX = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif"}
_SUFFIXES = (".png", ".jpg", ".webp", ".gif")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# An IEND chunk is always empty, so its length, type and CRC are these 12 fixed bytes.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_EDGE = 32
_CHUNK = 64 * 1024
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def _file_mode() -> int:
    # Read once, at import: os.umask can only be read by setting it.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def image_kind(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"webp"`` or ``"gif"`` from the first bytes; None otherwise."""
    mime = sniff_mime(head)
    return mime.removeprefix("image/") if mime is not None else None


def is_complete_image(head: bytes, tail: bytes, size: int) -> bool:
    """Whether a body with these first/last bytes and this size is a whole image.

    Only the edges are needed: PNG ends with its fixed IEND chunk, JPEG with the EOI
    marker, GIF with its trailer byte, and WEBP states its own length in the RIFF header.
    """
    kind = image_kind(head)
    if kind == "png":
        return size >= len(_PNG_SIGNATURE) + len(_PNG_IEND) and tail.endswith(_PNG_IEND)
    if kind == "jpeg":
        # Some encoders pad after EOI; a cut-off body ends mid-scan without it.
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if kind == "gif":
        return size > 13 and tail.endswith(b"\x3b")
    if kind == "webp":
        return size == int.from_bytes(head[4:8], "little") + 8
    return False


def same_origin(url: str, base_url: str) -> bool:
    """True when *url* has the scheme, host and port of *base_url*."""
    return _origin(url) == _origin(base_url)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _redacted(url: str) -> str:
    """The URL without its query: CDN signatures have no place in logs or errors."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def _stem_for(task: Task, filename: str | None) -> tuple[str, str | None]:
    """The file stem, and the image suffix the caller's name had (looked for first on reruns).

    The suffix written is always the one the content type calls for, so a ``fox.png``
    that arrives as WEBP is saved as ``fox.webp``.
    """
    if filename is None:
        # Ids come from the server; keep them from naming anything but a plain file.
        stem = _UNSAFE_NAME_CHARS.sub("_", task.id).lstrip(".") or "image"
        return stem, None
    if not isinstance(cast(object, filename), str) or not filename.strip():
        msg = "filename must be a non-empty string"
        raise InvalidRequestError(msg)
    separators = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    if any(sep in filename for sep in separators) or ".." in filename or "\x00" in filename:
        msg = f"filename {filename!r} must be a plain file name (no path separators or '..')"
        raise InvalidRequestError(msg)
    if filename in {".", ""}:
        msg = f"filename {filename!r} is not a file name"
        raise InvalidRequestError(msg)
    stem, suffix = os.path.splitext(filename)
    if suffix.lower() in _KIND_BY_SUFFIX and stem:
        return stem, ".jpg" if suffix.lower() == ".jpeg" else suffix.lower()
    return filename, None


def _inside(directory: Path, target: Path) -> None:
    if target.parent.resolve() != directory.resolve():
        msg = f"refusing to write {target}: it is not directly inside {directory}"
        raise InvalidRequestError(msg)


def _read_edges(path: Path) -> tuple[bytes, bytes, int] | None:
    """The first and last bytes and the size of a regular file; None if there is none."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(_EDGE)
            handle.seek(max(0, size - _EDGE))
            tail = handle.read(_EDGE)
    except OSError:
        return None
    return head, tail, size


def _existing_complete(directory: Path, stem: str, preferred: str | None) -> Path | None:
    """A complete image already saved under *stem*, whatever format it was saved as."""
    order = [preferred] if preferred else []
    order += [s for s in _SUFFIXES if s != preferred]
    for suffix in order:
        path = directory / f"{stem}{suffix}"
        edges = _read_edges(path)
        if edges is None:
            continue
        head, tail, size = edges
        if image_kind(head) == _KIND_BY_SUFFIX[suffix] and is_complete_image(head, tail, size):
            return path
    return None


def _prepare_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        msg = f"download directory {directory} exists and is not a directory"
        raise InvalidRequestError(msg) from exc
    if not directory.is_dir():
        msg = f"download directory {directory} is not a directory"
        raise InvalidRequestError(msg)


def _status_error(status: int, where: str, headers: Mapping[str, str]) -> APIError:
    message = f"{where}: HTTP {status}"
    if status in {401, 403}:
        return AuthenticationError(
            f"{message} (access denied; the link may have expired)", status=status
        )
    if status == 404 or status == 410:
        return NotFoundError(
            f"{message} (the image is gone; the link may have expired)", status=status
        )
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return RateLimitError(f"{message} (rate limited)", status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status)
    return APIError(message, status=status)


def _sync_and_close(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _discard(handle: IO[bytes], path: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(OSError):
        path.unlink()


async def _fetch_once(
    transport: AsyncTransport,
    request: Request,
    directory: Path,
    stem: str,
    max_bytes: int,
) -> Path:
    """One attempt: stream into a temporary file and rename it, or leave nothing behind."""
    where = f"GET {_redacted(request.url)}"
    async with transport.stream(request) as response:
        if not 200 <= response.status < 300:
            raise _status_error(response.status, where, response.headers)
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if not mime.startswith("image/"):
            msg = f"{where}: expected an image, got content type {content_type or 'none'!r}"
            raise DecodeError(msg, status=response.status)
        suffix = _SUFFIX_BY_TYPE.get(mime)
        if suffix is None:
            msg = f"{where}: unsupported image type {mime!r} (PNG, JPEG, WEBP or GIF expected)"
            raise DecodeError(msg, status=response.status)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            msg = f"{where}: the image is {int(declared):,} bytes; the limit is {max_bytes:,}"
            raise DecodeError(msg, status=response.status)
        target = directory / f"{stem}{suffix}"
        _inside(directory, target)
        fd, temp_name = await anyio.to_thread.run_sync(
            functools.partial(tempfile.mkstemp, prefix=f".{stem}.", suffix=".part", dir=directory)
        )
        temp = Path(temp_name)
        handle = os.fdopen(fd, "wb")
        try:
            head = b""
            tail = b""
            size = 0
            async for chunk in response.iter_chunks(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    msg = f"{where}: the image is larger than the limit of {max_bytes:,} bytes"
                    raise DecodeError(msg, status=response.status)
                if len(head) < _EDGE:
                    head = (head + chunk)[:_EDGE]
                tail = (tail + chunk)[-_EDGE:]
                await anyio.to_thread.run_sync(handle.write, chunk)
            kind = image_kind(head)
            if kind is None:
                msg = f"{where}: the body is not a PNG, JPEG, WEBP or GIF image ({size:,} bytes)"
                raise DecodeError(msg, status=response.status)
            if kind != _KIND_BY_SUFFIX[suffix]:
                msg = f"{where}: content type {mime!r} but the body is a {kind.upper()} image"
                raise DecodeError(msg, status=response.status)
            if not is_complete_image(head, tail, size):
                msg = f"{where}: the {kind.upper()} image is incomplete ({size:,} bytes received)"
                raise DecodeError(msg, status=response.status)
            await anyio.to_thread.run_sync(_sync_and_close, handle)
            # mkstemp creates 0600 files; a saved image gets the usual umask permissions.
            await anyio.to_thread.run_sync(os.chmod, temp, _FILE_MODE)
            await anyio.to_thread.run_sync(os.replace, temp, target)
        except BaseException:
            # Synchronous on purpose: it must run even while this task is being cancelled.
            _discard(handle, temp)
            raise
        return target


async def download_image(
    task: Task,
    directory: str | os.PathLike[str],
    *,
    transport: AsyncTransport,
    headers: Mapping[str, str],
    retry: RetryPolicy,
    rng: random.Random,
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout: float | None = None,
) -> Path:
    """Save *task*'s final image in *directory* and return its path (see `Client.download`).

    *headers* are sent as given: the caller decides whether the image's host may see
    the API key.
    """
    if task.status != TaskStatus.SUCCESS:
        msg = (
            f"task {task.id} is {task.status or 'without status'}, not SUCCESS; "
            "only a finished task's final image is downloaded (never the preview)"
        )
        raise InvalidRequestError(msg)
    url = (task.image_url or "").strip()
    if not url:
        msg = f"task {task.id} succeeded but has no image_url"
        raise InvalidRequestError(msg)
    if urlsplit(url).scheme.lower() not in {"http", "https"}:
        msg = f"task {task.id} has an image_url that is not http(s): {_redacted(url)!r}"
        raise InvalidRequestError(msg)
    if max_bytes <= 0:
        msg = f"max_bytes must be > 0, got {max_bytes!r}"
        raise InvalidRequestError(msg)
    stem, wanted_suffix = _stem_for(task, filename)
    folder = Path(os.fspath(directory))
    await anyio.to_thread.run_sync(_prepare_directory, folder)
    existing = await anyio.to_thread.run_sync(_existing_complete, folder, stem, wanted_suffix)
    if existing is not None:
        _inside(folder, existing)
        logger.debug("%s already holds a complete image; not downloading again", existing)
        return existing
    request = Request("GET", url, dict(headers), None, timeout)

    async def attempt() -> Path:
        return await _fetch_once(transport, request, folder, stem, max_bytes)

    return await with_retries(
        retry, RequestKind.QUERY, rng, attempt, what=f"the download of task {task.id}"
    )
