"""Deterministic PNG (and fake MP4) bytes for simulated results, stdlib only."""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(width: int, height: int, rows: list[bytes], text: str = "") -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``width * 3`` bytes) as a PNG.

    ``text`` goes into a ``tEXt`` chunk; the simulator puts the image name there so that
    two images are never byte-identical, even if their colours happen to collide.
    """
    if len(rows) != height or any(len(row) != width * 3 for row in rows):
        raise ValueError("rows do not match the image size")
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if text:
        chunks.append(_chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1", "replace")))
    chunks.append(_chunk(b"IDAT", zlib.compress(raw, 6)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _palette(key: str) -> list[tuple[int, int, int]]:
    digest = hashlib.sha256(key.encode()).digest()
    return [(digest[i], digest[i + 1], digest[i + 2]) for i in range(0, 18, 3)]


def _fade(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """Blend towards mid-grey: previews look washed out next to the final image."""
    r, g, b = colour
    return (
        int(r + (128 - r) * amount),
        int(g + (128 - g) * amount),
        int(b + (128 - b) * amount),
    )


@functools.lru_cache(maxsize=512)
def render_image(seed: str, size: int, *, grid: bool, preview_pct: int | None = None) -> bytes:
    """A ``size`` square PNG whose colours and stripe derive from ``seed`` (the task id).

    A grid image has four differently coloured quadrants, like Midjourney's 2x2 grid; a
    single (upscaled) image is one colour. A preview is the same picture faded towards
    grey with a white progress bar along the top whose length is ``preview_pct``.
    """
    palette = _palette(seed)
    if preview_pct is not None:
        fade = 0.75 - 0.5 * (max(0, min(100, preview_pct)) / 100)
        palette = [_fade(c, fade) for c in palette]
    half = size // 2
    stripe_colour = bytes(palette[4])
    stripe_row = palette[5][0] % max(1, size)
    stripe_height = max(1, size // 16)
    bar_height = max(1, size // 16) if preview_pct is not None else 0
    bar_len = size * max(0, min(100, preview_pct or 0)) // 100

    def row_for(colours: tuple[tuple[int, int, int], tuple[int, int, int]]) -> bytes:
        if not grid:
            return bytes(colours[0]) * size
        return bytes(colours[0]) * half + bytes(colours[1]) * (size - half)

    top = row_for((palette[0], palette[1]))
    bottom = row_for((palette[2], palette[3])) if grid else top
    stripe = stripe_colour * size
    bar = b"\xff\xff\xff" * bar_len + top[bar_len * 3 :]
    rows: list[bytes] = []
    for y in range(size):
        if y < bar_height:
            rows.append(bar)
        elif stripe_row <= y < stripe_row + stripe_height:
            rows.append(stripe)
        else:
            rows.append(top if y < half else bottom)
    label = f"mjasync-simulator {seed}" + (
        f" preview {preview_pct}%" if preview_pct is not None else ""
    )
    return encode_png(size, size, rows, text=label)


def fake_mp4(seed: str) -> bytes:
    """A tiny byte string that starts like an MP4 (``ftyp`` box); not playable, but typed."""
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomavc1"
    payload = hashlib.sha256(seed.encode()).digest()
    return ftyp + struct.pack(">I", 8 + len(payload)) + b"free" + payload
