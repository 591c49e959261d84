"""What a result file is: image or video, which format, whether it is complete.

`Client.download` saves a task's ``"image"`` or its ``"video"`` (`MediaKind`); which URL
that is (`media_url`) depends on the dialect, and a body is only kept when its magic bytes
match the suffix it gets and its format's own completeness rule holds: an image's end
marker, an MP4's boxes tiling the file from its ``ftyp`` box, a WebM's declared segment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Literal, cast, get_args
from urllib.parse import urlsplit

from ._errors import InvalidRequestError
from ._images import sniff_mime
from ._models import Task, TaskAction
from ._redact import display_url

__all__ = [
    "KINDS_BY_SUFFIX",
    "MediaKind",
    "body_kind",
    "check_kind",
    "default_kind",
    "image_kind",
    "is_complete_image",
    "is_complete_video",
    "media_url",
    "video_kind",
]

MediaKind = Literal["image", "video"]
"""What `Client.download` saves: the task's ``"image"`` or its ``"video"``."""
_MEDIA_KINDS: tuple[str, ...] = get_args(MediaKind)


def check_kind(kind: object) -> MediaKind | None:
    """*kind* when it is a `MediaKind` or None; `InvalidRequestError` otherwise."""
    if kind is not None and kind not in _MEDIA_KINDS:
        msg = f'kind must be "image", "video" or None, got {kind!r}'
        raise InvalidRequestError(msg)
    return cast(MediaKind | None, kind)


# The body kinds (from magic bytes) each suffix accepts.
KINDS_BY_SUFFIX: dict[str, frozenset[str]] = {
    ".png": frozenset({"png"}),
    ".jpg": frozenset({"jpeg"}),
    ".jpeg": frozenset({"jpeg"}),
    ".webp": frozenset({"webp"}),
    ".gif": frozenset({"gif"}),
    ".mp4": frozenset({"mp4"}),
    ".mov": frozenset({"mp4", "quicktime"}),
    ".webm": frozenset({"webm"}),
}
_VIDEO_ACTIONS = frozenset({TaskAction.VIDEO, TaskAction.VIDEO_EXTEND})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# An IEND chunk is always empty, so its length, type and CRC are these 12 fixed bytes.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SEGMENT = b"\x18\x53\x80\x67"
# Top-level boxes a QuickTime file written before ISO BMFF may start with (no ftyp).
_QUICKTIME_FIRST = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
# A fragmented MP4 has two boxes per fragment; this bounds the walk, not real files.
_MAX_BOXES = 1_000_000


def image_kind(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"webp"`` or ``"gif"`` from the first bytes; None otherwise."""
    mime = sniff_mime(head)
    return mime.removeprefix("image/") if mime is not None else None


def video_kind(head: bytes) -> str | None:
    """``"mp4"`` (an ISO BMFF ``ftyp`` box), ``"quicktime"`` or ``"webm"``; None otherwise."""
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(_EBML_MAGIC):
        return "webm"
    if head[4:8] in _QUICKTIME_FIRST:
        return "quicktime"
    return None


def body_kind(head: bytes) -> str | None:
    """The image or video kind of a body from its first bytes; None for neither."""
    return image_kind(head) or video_kind(head)


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


def _box_types(handle: IO[bytes], size: int) -> list[bytes] | None:
    """The top-level ISO BMFF box types, if the boxes tile the file exactly; else None."""
    types: list[bytes] = []
    offset = 0
    while offset < size:
        if len(types) >= _MAX_BOXES:
            return None
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            return None
        box_size = int.from_bytes(header[:4], "big")
        box_type = header[4:8]
        if not all(0x20 <= byte <= 0x7E for byte in box_type):
            return None
        if box_size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                return None
            box_size = int.from_bytes(header[8:16], "big")
            if box_size < 16:
                return None
        elif box_size == 0:  # the last box runs to the end of the file
            box_size = size - offset
        elif box_size < 8:
            return None
        types.append(box_type)
        offset += box_size
    return types if offset == size else None


def _ebml_vint(data: bytes, at: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer at *at*: (value, length, all value bits set)."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    if keep_marker:
        return value, length, False
    value_bits = 7 * length
    value &= (1 << value_bits) - 1
    return value, length, value == (1 << value_bits) - 1


def _webm_complete(head: bytes, size: int) -> bool:
    """The EBML header, then a Segment whose declared size fits the file.

    A Segment of unknown size (a live stream's) cannot be checked from the bytes.
    """
    ebml_id = _ebml_vint(head, 0, keep_marker=True)
    if ebml_id is None or head[: ebml_id[1]] != _EBML_MAGIC:
        return False
    header_size = _ebml_vint(head, ebml_id[1], keep_marker=False)
    if header_size is None:
        return False
    at = ebml_id[1] + header_size[1] + header_size[0]
    segment_id = _ebml_vint(head, at, keep_marker=True)
    if segment_id is None or head[at : at + segment_id[1]] != _MATROSKA_SEGMENT:
        return False
    segment_size = _ebml_vint(head, at + segment_id[1], keep_marker=False)
    if segment_size is None:
        return False
    value, length, unknown = segment_size
    return unknown or size >= at + segment_id[1] + length + value


def is_complete_video(path: str | os.PathLike[str]) -> bool:
    """Whether the file at *path* is a whole MP4, QuickTime or WebM video.

    MP4/QuickTime: the top-level boxes (an ``ftyp`` first, for MP4) tile the file exactly,
    so a body cut anywhere but a box boundary is caught. WebM: the EBML header and the
    Segment's declared size fit the file.
    """
    try:
        with Path(path).open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(64)
            kind = video_kind(head)
            if kind == "webm":
                return _webm_complete(head, size)
            if kind is None:
                return False
            types = _box_types(handle, size)
    except OSError:
        return False
    if types is None or len(types) < 2:
        return False
    return kind == "quicktime" or types[0] == b"ftyp"


def default_kind(task: Task) -> MediaKind:
    """``"video"`` for a VIDEO task or a task whose only result is a video, else ``"image"``."""
    if task.action in _VIDEO_ACTIONS:
        return "video"
    image = (task.image_url or "").strip()
    if task.video_urls and (not image or image in task.video_urls):
        return "video"
    return "image"


def media_url(task: Task, kind: MediaKind) -> str:
    """The URL `download` fetches for *kind*; InvalidRequestError when there is none."""
    if kind == "video":
        url = (task.video_url or "").strip()
        if not url:
            msg = f"task {task.id} has no video (no videoUrl, videoUrls or video imageUrl)"
            raise InvalidRequestError(msg)
    else:
        url = (task.image_url or "").strip()
        if not url:
            msg = f"task {task.id} succeeded but has no image_url"
            raise InvalidRequestError(msg)
        if url in task.video_urls:
            # trueai puts a VIDEO task's video in imageUrl: never save it as an image.
            msg = f"task {task.id} has no image: its imageUrl is its video; use kind='video'"
            raise InvalidRequestError(msg)
    if urlsplit(url).scheme.lower() not in {"http", "https"}:
        msg = f"task {task.id} has a {kind} URL that is not http(s): {display_url(url)!r}"
        raise InvalidRequestError(msg)
    return url
