"""Saving a finished task's image or video: named, streamed, validated, renamed atomically.

Result URLs expire (Discord CDN links last about a day and no proxy can refresh them),
so a result is worth fetching the moment a task succeeds, and a half-written file must
never be mistaken for one: the body is streamed to a hidden temporary file in the target
directory, checked (status, content type, size cap, magic bytes, and the format's own
completeness rule) and only then renamed over the final name. Every failure,
cancellation included, removes the temporary file. Failures of the local filesystem
(permissions, a full disk, a file where the directory should be) are `LocalFileError`.
What a body is (its kind, whether it is complete) is `_media`'s question.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import hashlib
import logging
import os
import random
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

import anyio
import anyio.to_thread

from ._errors import (
    APIError,
    AuthenticationError,
    DecodeError,
    InvalidRequestError,
    MJError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ._media import (
    KINDS_BY_SUFFIX,
    MediaKind,
    body_kind,
    is_complete_image,
    is_complete_video,
    media_url,
)
from ._models import Task, TaskStatus
from ._policy import RetryPolicy
from ._redact import display_url
from ._retry import RequestKind, parse_retry_after, with_retries
from ._transport import AsyncTransport, Request

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "LocalFileError",
    "download_result",
    "file_stem",
]

logger = logging.getLogger("mjasync")

DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024

_IMAGE_SUFFIX_BY_TYPE = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_VIDEO_SUFFIX_BY_TYPE = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".webp", ".gif")
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")
_EDGE = 32
_CHUNK = 64 * 1024
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# NAME_MAX is 255 bytes on common filesystems; the temporary file adds 15 bytes
# (".<stem>.XXXXXXXX.part") and the suffix up to 5: a 200-byte stem leaves room.
_MAX_STEM_BYTES = 200
_TEMP_OVERHEAD = len("..XXXXXXXX.part") + len(".webm")
_HASH_CHARS = 16


class LocalFileError(MJError, OSError):
    """The local filesystem refused: permission denied, disk full, a file in the way.

    Also an `OSError`, so ``except OSError`` keeps working; ``filename`` is the path,
    ``errno`` and ``strerror`` are the operating system's.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        errno: int | None = None,
        strerror: str | None = None,
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.strerror = strerror
        self.filename = os.fspath(path) if path is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _local_file_error,
            (type(self), self.message, self.filename, self.errno, self.strerror),
        )


def _local_file_error(
    cls: type[LocalFileError],
    message: str,
    path: str | None,
    errno: int | None,
    strerror: str | None,
) -> LocalFileError:
    return cls(message, path=path, errno=errno, strerror=strerror)


@contextlib.contextmanager
def _local(doing: str, path: Path) -> Iterator[None]:
    """Turn an OSError of a filesystem call into a `LocalFileError` naming *path*."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, MJError):
            raise
        reason = exc.strerror or str(exc)
        msg = f"could not {doing} {path}: {reason}"
        raise LocalFileError(msg, path=path, errno=exc.errno, strerror=exc.strerror) from exc


def _file_mode() -> int:
    # Read once, at import: os.umask can only be read by setting it.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _fit(name: str, limit: int = _MAX_STEM_BYTES) -> str:
    """*name* if it fits in *limit* UTF-8 bytes; else a prefix plus a hash of the whole.

    The hash keeps two long names that share a prefix apart.
    """
    raw = name.encode("utf-8")
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    head = raw[: max(0, limit - _HASH_CHARS - 1)].decode("utf-8", "ignore")
    return f"{head}-{digest}" if head else digest


def _safe(text: str) -> str:
    return _UNSAFE_NAME_CHARS.sub("_", text).lstrip(".")


def file_stem(task: Task | str, *, prefix: str | None = None) -> str:
    """The file name, without suffix, that `Client.download` gives a task's result.

    It is the task id with every character outside ``A-Z a-z 0-9 . _ -`` replaced by
    ``_`` (ids come from the server and must not name a path), after ``<prefix>-`` when
    *prefix* is given (cleaned the same way), e.g. ``"1748339029401828"`` or
    ``"U2-1748339029401828"``. A name longer than 200 UTF-8 bytes keeps its first bytes
    and ends with ``-`` and 16 hex digits of its SHA-256, so it stays unique and fits
    every common filesystem. The suffix comes from the content type when the file is
    saved. Pass the result as ``download(..., filename=...)``.
    """
    task_id = task.id if isinstance(task, Task) else task
    if not isinstance(cast(object, task_id), str) or not task_id.strip():
        msg = "file_stem needs a Task or a non-empty task id"
        raise InvalidRequestError(msg)
    stem = _safe(task_id.strip()) or "task"
    if prefix is not None:
        cleaned = _safe(prefix.strip()) if isinstance(cast(object, prefix), str) else ""
        if not cleaned:
            msg = f"prefix {prefix!r} has no character usable in a file name"
            raise InvalidRequestError(msg)
        stem = f"{cleaned}-{stem}"
    return _fit(stem)


def _name_max(directory: Path) -> int:
    # eCryptfs allows 143 bytes, most others 255; ask the filesystem where it can tell.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return max(32, os.pathconf(directory, "PC_NAME_MAX"))
    return 255


def _stem_for(
    task: Task, filename: str | None, suffixes: tuple[str, ...]
) -> tuple[str, str | None]:
    """The file stem, and the suffix the caller's name had (looked for first on reruns).

    The suffix written is always the one the content type calls for, so a ``fox.png``
    that arrives as WEBP is saved as ``fox.webp``.
    """
    if filename is None:
        return file_stem(task), None
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
    suffix = ".jpg" if suffix.lower() == ".jpeg" else suffix.lower()
    if suffix in suffixes and stem:
        return _fit(stem), suffix
    return _fit(filename), None


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


def _existing_complete(
    directory: Path, stem: str, preferred: str | None, kind: MediaKind
) -> Path | None:
    """A complete result already saved under *stem*, whatever format it was saved as."""
    suffixes = _VIDEO_SUFFIXES if kind == "video" else _IMAGE_SUFFIXES
    order = [preferred] if preferred is not None and preferred in suffixes else []
    order += [s for s in suffixes if s != preferred]
    for suffix in order:
        path = directory / f"{stem}{suffix}"
        edges = _read_edges(path)
        if edges is None:
            continue
        head, tail, size = edges
        if body_kind(head) not in KINDS_BY_SUFFIX[suffix]:
            continue
        if kind == "video" and is_complete_video(path):
            return path
        if kind == "image" and is_complete_image(head, tail, size):
            return path
    return None


def _prepare_directory(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        msg = f"download directory {directory} exists and is not a directory"
        raise LocalFileError(
            msg,
            path=directory,
            errno=errno_codes.ENOTDIR,
            strerror=os.strerror(errno_codes.ENOTDIR),
        )
    with _local("create the download directory", directory):
        directory.mkdir(parents=True, exist_ok=True)


def _status_error(status: int, where: str, headers: Mapping[str, str], what: str) -> APIError:
    message = f"{where}: HTTP {status}"
    if status in {401, 403}:
        return AuthenticationError(
            f"{message} (access denied; the link may have expired)", status=status
        )
    if status == 404 or status == 410:
        return NotFoundError(
            f"{message} (the {what} is gone; the link may have expired)", status=status
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


def _suffix_for(mime: str, content_type: str, kind: MediaKind, where: str, status: int) -> str:
    """The file suffix for this content type, or a DecodeError when it is the wrong kind."""
    if kind == "image":
        suffix = _IMAGE_SUFFIX_BY_TYPE.get(mime)
        if suffix is not None:
            return suffix
        if mime.startswith("image/"):
            msg = f"{where}: unsupported image type {mime!r} (PNG, JPEG, WEBP or GIF expected)"
        elif mime.startswith("video/"):
            msg = f"{where}: expected an image, got a video ({mime!r}); use kind='video'"
        else:
            msg = f"{where}: expected an image, got content type {content_type or 'none'!r}"
        raise DecodeError(msg, status=status)
    suffix = _VIDEO_SUFFIX_BY_TYPE.get(mime)
    if suffix is not None:
        return suffix
    if mime.startswith("video/"):
        msg = f"{where}: unsupported video type {mime!r} (MP4, WebM or QuickTime expected)"
    else:
        msg = f"{where}: expected a video, got content type {content_type or 'none'!r}"
    raise DecodeError(msg, status=status)


async def _fetch_once(
    transport: AsyncTransport,
    request: Request,
    directory: Path,
    stem: str,
    max_bytes: int,
    kind: MediaKind,
) -> Path:
    """One attempt: stream into a temporary file and rename it, or leave nothing behind."""
    where = f"GET {display_url(request.url)}"
    async with transport.stream(request) as response:
        if not 200 <= response.status < 300:
            raise _status_error(response.status, where, response.headers, kind)
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        suffix = _suffix_for(mime, content_type, kind, where, response.status)
        declared = response.headers.get("content-length", "").strip()
        expected = int(declared) if declared.isascii() and declared.isdigit() else None
        if expected is not None and expected > max_bytes:
            msg = f"{where}: the {kind} is {expected:,} bytes; the limit is {max_bytes:,}"
            raise DecodeError(msg, status=response.status)
        if response.headers.get("content-encoding", "identity").strip().lower() not in {
            "",
            "identity",
        }:
            expected = None  # the length of the compressed body, not of what is read
        target = directory / f"{stem}{suffix}"
        _inside(directory, target)
        # Created on the event loop (one open() call), not in a worker thread: a
        # cancellation landing during an awaited creation would lose the file's name and
        # descriptor before the cleanup below could see them.
        with _local("create a temporary file in", directory):
            fd, temp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=directory)
        temp = Path(temp_name)
        handle = os.fdopen(fd, "wb")
        try:
            head = b""
            tail = b""
            size = 0
            async for chunk in response.iter_chunks(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    msg = f"{where}: the {kind} is larger than the limit of {max_bytes:,} bytes"
                    raise DecodeError(msg, status=response.status)
                if len(head) < _EDGE:
                    head = (head + chunk)[:_EDGE]
                tail = (tail + chunk)[-_EDGE:]
                with _local("write", temp):
                    await anyio.to_thread.run_sync(handle.write, chunk)
            body = body_kind(head)
            label = kind if body is None else body.upper()
            if body is None:
                expected_kinds = "PNG, JPEG, WEBP or GIF" if kind == "image" else "MP4 or WebM"
                msg = f"{where}: the body is not a {expected_kinds} {kind} ({size:,} bytes)"
                raise DecodeError(msg, status=response.status)
            if body not in KINDS_BY_SUFFIX[suffix]:
                msg = f"{where}: content type {mime!r} but the body is a {label} file"
                raise DecodeError(msg, status=response.status)
            if expected is not None and size != expected:
                msg = f"{where}: the {label} {kind} is incomplete ({size:,} of {expected:,} bytes)"
                raise DecodeError(msg, status=response.status)
            with _local("write", temp):
                await anyio.to_thread.run_sync(_sync_and_close, handle)
            complete = (
                is_complete_image(head, tail, size)
                if kind == "image"
                else await anyio.to_thread.run_sync(is_complete_video, temp)
            )
            if not complete:
                msg = f"{where}: the {label} {kind} is incomplete ({size:,} bytes received)"
                raise DecodeError(msg, status=response.status)
            # mkstemp creates 0600 files; a saved result gets the usual umask permissions.
            with _local("set the permissions of", temp):
                await anyio.to_thread.run_sync(os.chmod, temp, _FILE_MODE)
            with _local("save", target):
                await anyio.to_thread.run_sync(os.replace, temp, target)
        except BaseException:
            # Synchronous on purpose: it must run even while this task is being cancelled.
            _discard(handle, temp)
            raise
        return target


async def download_result(
    task: Task,
    directory: str | os.PathLike[str],
    *,
    kind: MediaKind,
    transport: AsyncTransport,
    headers: Mapping[str, str],
    retry: RetryPolicy,
    rng: random.Random,
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout: float | None = None,
) -> Path:
    """Save *task*'s final image or video in *directory*; return its path (`Client.download`).

    *headers* are sent as given: the caller decides whether the result's host may see
    the API key. *kind* was checked by the caller (`check_kind`).
    """
    if task.status != TaskStatus.SUCCESS:
        msg = (
            f"task {task.id} is {task.status or 'without status'}, not SUCCESS; "
            f"only a finished task's final {kind} is downloaded (never the preview)"
        )
        raise InvalidRequestError(msg)
    url = media_url(task, kind)
    if max_bytes <= 0:
        msg = f"max_bytes must be > 0, got {max_bytes!r}"
        raise InvalidRequestError(msg)
    suffixes = _VIDEO_SUFFIXES if kind == "video" else _IMAGE_SUFFIXES
    stem, wanted_suffix = _stem_for(task, filename, suffixes)
    folder = Path(os.fspath(directory))
    await anyio.to_thread.run_sync(_prepare_directory, folder)
    limit = await anyio.to_thread.run_sync(_name_max, folder)
    stem = _fit(stem, min(_MAX_STEM_BYTES, limit - _TEMP_OVERHEAD))
    existing = await anyio.to_thread.run_sync(_existing_complete, folder, stem, wanted_suffix, kind)
    if existing is not None:
        _inside(folder, existing)
        logger.debug("%s already holds a complete %s; not downloading again", existing, kind)
        return existing
    request = Request("GET", url, dict(headers), None, timeout)

    async def attempt() -> Path:
        return await _fetch_once(transport, request, folder, stem, max_bytes, kind)

    return await with_retries(
        retry, RequestKind.QUERY, rng, attempt, what=f"the download of task {task.id}"
    )
