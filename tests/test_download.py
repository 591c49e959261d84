"""Client.download: streamed, validated, atomic, never outside the directory."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import stat
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from _shared import png
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync._media import default_kind, is_complete_image, is_complete_video
from mjasync.testing import MockTransport, json_response, task_payload

FAST_RETRY = mjasync.RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.005)


def make_png(seed: int = 1, size: int = 8) -> bytes:
    """A small valid PNG whose colour derives from *seed*."""
    return png(size, pixel=bytes([seed % 256, 40, 200]))


PNG = make_png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x11" * 200 + b"\xff\xd9"
WEBP_BODY = b"WEBPVP8 " + b"\x00" * 20
WEBP = b"RIFF" + len(WEBP_BODY).to_bytes(4, "little") + WEBP_BODY
GIF = b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00" + b"\x2c" + b"\x00" * 10 + b"\x3b"


def box(kind: bytes, payload: bytes) -> bytes:
    """One ISO BMFF box: 32-bit size, type, payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


MP4 = (
    box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    + box(b"moov", box(b"mvhd", bytes(100)))
    + box(b"mdat", bytes(3000))
)
MOV = box(b"wide", b"") + box(b"mdat", bytes(500)) + box(b"moov", bytes(50))
# EBML header (size 0x9F = 31 bytes) then a Segment with an 8-byte size field.
WEBM = (
    b"\x1a\x45\xdf\xa3\x9f"
    + bytes(31)
    + b"\x18\x53\x80\x67\x01"
    + (200).to_bytes(7, "big")
    + bytes(200)
)


class ImageHost:
    """An in-process aiohttp app serving good and bad images, counting requests."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.release = anyio.Event()
        self.first_chunk_sent = anyio.Event()
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        self.server = TestServer(app)

    def url(self, name: str) -> str:
        """The absolute URL of *name* on this host."""
        return str(self.server.make_url(f"/{name}"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one named scenario."""
        name = request.match_info["name"]
        self.hits[name] += 1
        self.headers[name] = dict(request.headers)
        if name == "ok.png":
            return web.Response(body=PNG, content_type="image/png")
        if name == "photo":
            return web.Response(body=JPEG, content_type="image/jpeg")
        if name == "pic.webp":
            return web.Response(body=WEBP, content_type="image/webp")
        if name == "anim":
            return web.Response(body=GIF, content_type="image/gif")
        if name == "page.html":
            return web.Response(text="<html>expired</html>", content_type="text/html")
        if name == "missing.png":
            return web.Response(status=404, text="This content is no longer available.")
        if name == "truncated.png":
            return web.Response(body=PNG[:-12], content_type="image/png")
        if name == "truncated.jpg":
            return web.Response(body=JPEG[:-2], content_type="image/jpeg")
        if name == "lying.png":
            return web.Response(body=JPEG, content_type="image/png")
        if name == "huge.png":
            return web.Response(body=PNG + b"\x00" * 4096, content_type="image/png")
        if name == "huge-chunked.png":
            return await self._chunked(request, [PNG[:40]] + [b"\x00" * 1024] * 8)
        if name == "flaky.png":
            if self.hits[name] == 1:
                return web.Response(status=503, text="busy")
            return web.Response(body=PNG, content_type="image/png")
        if name == "limited.png":
            if self.hits[name] == 1:
                return web.Response(status=429, headers={"Retry-After": "0"})
            return web.Response(body=PNG, content_type="image/png")
        if name == "dropped.png":
            if self.hits[name] == 1:
                return await self._drop(request)
            return web.Response(body=PNG, content_type="image/png")
        if name == "slow.png":
            return await self._slow(request)
        videos = {
            "clip.mp4": (MP4, "video/mp4"),
            "clip.webm": (WEBM, "video/webm"),
            "clip.mov": (MOV, "video/quicktime"),
            "cut.mp4": (MP4[:-100], "video/mp4"),
            "cut.webm": (WEBM[:-10], "video/webm"),
            "png-as-video": (PNG, "image/png"),
            "mp4-as-image": (MP4, "video/mp4"),
            "mp4-labelled-webm": (MP4, "video/webm"),
            "avi": (b"RIFF\x00\x00\x00\x00AVI ", "video/x-msvideo"),
        }
        if name in videos:
            body, content_type = videos[name]
            return web.Response(body=body, content_type=content_type)
        return web.Response(status=500)

    async def _chunked(self, request: web.Request, parts: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG)
        await response.prepare(request)
        await response.write(PNG[:20])
        assert request.transport is not None
        request.transport.close()
        return response

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG)
        await response.prepare(request)
        await response.write(PNG[:30])
        self.first_chunk_sent.set()
        await self.release.wait()
        return response


@pytest.fixture
async def host() -> AsyncIterator[ImageHost]:
    """A running image host, shut down after the test."""
    image_host = ImageHost()
    await image_host.server.start_server()
    try:
        yield image_host
    finally:
        image_host.release.set()
        await image_host.server.close()


@pytest.fixture
async def other_host() -> AsyncIterator[ImageHost]:
    """A second host: a different origin from the first."""
    image_host = ImageHost()
    await image_host.server.start_server()
    try:
        yield image_host
    finally:
        image_host.release.set()
        await image_host.server.close()


def done(image_url: str | None, task_id: str = "1700000000000001") -> mjasync.Task:
    """A SUCCESS task whose image lives at *image_url*."""
    return mjasync.Task(id=task_id, status=mjasync.TaskStatus.SUCCESS, image_url=image_url)


def client_for(
    host: ImageHost,
    *,
    retry: mjasync.RetryPolicy = FAST_RETRY,
    max_download_bytes: int = 50 * 1024 * 1024,
) -> mjasync.Client:
    """A client whose base URL is *host* (so its images share the API's origin)."""
    base_url = str(host.server.make_url("/"))
    return mjasync.Client(
        base_url, "secret-key", retry=retry, max_download_bytes=max_download_bytes
    )


def leftovers(directory: Path) -> list[str]:
    """Every name in *directory*, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


async def test_downloads_png_named_after_task(host: ImageHost, tmp_path: Path) -> None:
    """A PNG is saved as <task id>.png inside the directory, byte for byte."""
    async with client_for(host) as mj:
        path = await mj.download(done(host.url("ok.png")), tmp_path / "out")
    assert path == tmp_path / "out" / "1700000000000001.png"
    assert path.read_bytes() == PNG
    assert leftovers(tmp_path / "out") == ["1700000000000001.png"]


async def test_saved_files_get_umask_permissions_not_0600(host: ImageHost, tmp_path: Path) -> None:
    """The temporary file's private 0600 mode does not survive into the saved image."""
    umask = os.umask(0o022)
    try:
        async with client_for(host) as mj:
            path = await mj.download(done(host.url("ok.png")), tmp_path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    ("name", "suffix"), [("photo", ".jpg"), ("pic.webp", ".webp"), ("anim", ".gif")]
)
async def test_suffix_comes_from_content_type(
    host: ImageHost, tmp_path: Path, name: str, suffix: str
) -> None:
    """JPEG, WEBP and GIF bodies get the suffix their content type names."""
    async with client_for(host) as mj:
        path = await mj.download(done(host.url(name)), tmp_path)
    assert path.suffix == suffix
    assert leftovers(tmp_path) == [f"1700000000000001{suffix}"]


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("page.html", mjasync.DecodeError, "expected an image"),
        ("missing.png", mjasync.NotFoundError, "HTTP 404"),
        ("truncated.png", mjasync.DecodeError, "incomplete"),
        ("truncated.jpg", mjasync.DecodeError, "incomplete"),
        ("lying.png", mjasync.DecodeError, "body is a JPEG"),
    ],
)
async def test_bad_bodies_raise_and_leave_no_file(
    host: ImageHost, tmp_path: Path, name: str, error: type[Exception], match: str
) -> None:
    """Wrong type, 404, truncated images and mislabelled bodies raise and leave nothing."""
    async with client_for(host) as mj:
        with pytest.raises(error, match=match):
            await mj.download(done(host.url(name)), tmp_path)
    assert leftovers(tmp_path) == []
    assert host.hits[name] == 1  # none of these is transient


async def test_declared_size_over_cap_fails_before_reading(host: ImageHost, tmp_path: Path) -> None:
    """A Content-Length over the client's cap is refused without writing anything."""
    async with client_for(host, max_download_bytes=len(PNG) + 100) as mj:
        with pytest.raises(mjasync.DecodeError, match="the limit is"):
            await mj.download(done(host.url("huge.png")), tmp_path)
    assert leftovers(tmp_path) == []


async def test_streamed_size_over_cap_is_cut_off(host: ImageHost, tmp_path: Path) -> None:
    """A chunked body that grows past max_bytes is abandoned and its temp file removed."""
    async with client_for(host) as mj:
        with pytest.raises(mjasync.DecodeError, match="larger than the limit"):
            await mj.download(done(host.url("huge-chunked.png")), tmp_path, max_bytes=2048)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["flaky.png", "limited.png", "dropped.png"])
async def test_transient_failures_are_retried(host: ImageHost, tmp_path: Path, name: str) -> None:
    """A 503, a 429 with Retry-After and a dropped connection are retried once, then saved."""
    async with client_for(host) as mj:
        path = await mj.download(done(host.url(name)), tmp_path)
    assert path.read_bytes() == PNG
    assert host.hits[name] == 2
    assert leftovers(tmp_path) == [path.name]


async def test_retries_stop_at_the_policy(host: ImageHost, tmp_path: Path) -> None:
    """With attempts=1 the first 503 is raised as ServerError."""
    async with client_for(host, retry=mjasync.RetryPolicy(attempts=1)) as mj:
        with pytest.raises(mjasync.ServerError):
            await mj.download(done(host.url("flaky.png")), tmp_path)
    assert host.hits["flaky.png"] == 1


class _Watched(mjasync.StreamResponse):
    """Wraps a real stream; sets *asked_again* when the reader wants a second chunk."""

    def __init__(self, inner: mjasync.StreamResponse, asked_again: anyio.Event) -> None:
        self.status = inner.status
        self.headers = inner.headers
        self._inner = inner
        self._asked_again = asked_again

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Yield the inner chunks, signalling once the first one has been consumed."""
        count = 0
        async for chunk in self._inner.iter_chunks(chunk_size):
            yield chunk
            count += 1
            if count == 1:
                self._asked_again.set()


class WatchedTransport(mjasync.AiohttpTransport):
    """The real aiohttp transport, reporting when a download has written its first chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_again = anyio.Event()

    @contextlib.asynccontextmanager
    async def stream(self, request: mjasync.Request) -> AsyncIterator[mjasync.StreamResponse]:
        """Stream through aiohttp, wrapping the response."""
        async with super().stream(request) as response:
            yield _Watched(response, self.asked_again)


async def test_cancel_mid_download_removes_temp_file(host: ImageHost, tmp_path: Path) -> None:
    """Cancelling while the body streams leaves neither the file nor its temporary."""
    transport = WatchedTransport()
    base_url = str(host.server.make_url("/"))
    async with mjasync.Client(base_url, transport=transport) as mj:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(mj.download, done(host.url("slow.png")), tmp_path)
                await transport.asked_again.wait()
                assert any(name.endswith(".part") for name in leftovers(tmp_path))
                scope.cancel()
    assert scope.cancelled_caught
    assert leftovers(tmp_path) == []


async def test_existing_complete_file_is_not_downloaded_again(
    host: ImageHost, tmp_path: Path
) -> None:
    """A rerun finds the complete image already saved and sends no request."""
    async with client_for(host) as mj:
        first = await mj.download(done(host.url("ok.png")), tmp_path)
        second = await mj.download(done(host.url("ok.png")), tmp_path)
    assert first == second
    assert host.hits["ok.png"] == 1


async def test_existing_incomplete_file_is_replaced(host: ImageHost, tmp_path: Path) -> None:
    """A truncated file left by an old crash is downloaded again and replaced atomically."""
    (tmp_path / "1700000000000001.png").write_bytes(PNG[:-12])
    async with client_for(host) as mj:
        path = await mj.download(done(host.url("ok.png")), tmp_path)
    assert path.read_bytes() == PNG
    assert host.hits["ok.png"] == 1


@pytest.mark.parametrize(
    "task",
    [
        mjasync.Task(id="1", status=mjasync.TaskStatus.IN_PROGRESS, image_url="http://x/p.png"),
        mjasync.Task(id="1", status=mjasync.TaskStatus.FAILURE),
        mjasync.Task(id="1", status=mjasync.TaskStatus.SUCCESS, image_url=None),
        mjasync.Task(id="1", status=mjasync.TaskStatus.SUCCESS, image_url="file:///etc/passwd"),
    ],
)
async def test_unfinished_tasks_are_refused(
    host: ImageHost, tmp_path: Path, task: mjasync.Task
) -> None:
    """A preview, a failed task, a missing or non-http URL raise InvalidRequestError."""
    async with client_for(host) as mj:
        with pytest.raises(mjasync.InvalidRequestError):
            await mj.download(task, tmp_path)
    assert sum(host.hits.values()) == 0


@pytest.mark.parametrize("filename", ["../x.png", "a/b.png", "a\\b", "..", "x..png", ""])
async def test_filenames_with_paths_are_refused(
    host: ImageHost, tmp_path: Path, filename: str
) -> None:
    """Path separators and '..' in filename raise before anything is sent."""
    async with client_for(host) as mj:
        with pytest.raises(mjasync.InvalidRequestError):
            await mj.download(done(host.url("ok.png")), tmp_path, filename=filename)
    assert sum(host.hits.values()) == 0


async def test_filename_suffix_follows_content(host: ImageHost, tmp_path: Path) -> None:
    """filename='fox.png' for a WEBP body is saved as fox.webp; a plain stem gets a suffix."""
    async with client_for(host) as mj:
        webp = await mj.download(done(host.url("pic.webp")), tmp_path, filename="fox.png")
        png = await mj.download(done(host.url("ok.png")), tmp_path, filename="fox-2")
    assert webp == tmp_path / "fox.webp"
    assert png == tmp_path / "fox-2.png"


async def test_hostile_task_id_stays_inside_directory(host: ImageHost, tmp_path: Path) -> None:
    """A task id full of path syntax still names a plain file inside the directory."""
    inner = tmp_path / "inner"
    async with client_for(host) as mj:
        path = await mj.download(done(host.url("ok.png"), task_id="../../etc/evil"), inner)
    assert path.parent == inner
    assert leftovers(tmp_path) == ["inner"]
    assert path.name.endswith(".png")
    assert "/" not in path.name
    assert not path.name.startswith(".")


async def test_api_key_goes_only_to_own_origin(
    host: ImageHost, other_host: ImageHost, tmp_path: Path
) -> None:
    """Images on the API's origin get the auth header; a CDN on another origin does not."""
    async with client_for(host) as mj:
        await mj.download(done(host.url("ok.png"), task_id="a"), tmp_path)
        await mj.download(done(other_host.url("ok.png"), task_id="b"), tmp_path)
    assert host.headers["ok.png"]["Authorization"] == "Bearer secret-key"
    assert "Authorization" not in other_host.headers["ok.png"]
    assert other_host.headers["ok.png"]["Accept"] == "image/*"


async def test_download_by_id_fetches_first(tmp_path: Path) -> None:
    """Given an id, download fetches the task and then streams its image (MockTransport)."""
    image_url = "https://cdn.example/grid.png"

    def handler(request: mjasync.Request) -> mjasync.Response:
        if request.url.endswith("/fetch"):
            return json_response(task_payload("42", image_url=image_url))
        assert request.url == image_url
        return mjasync.Response(200, {"content-type": "image/png"}, PNG)

    transport = MockTransport(handler)
    async with mjasync.Client("http://mj.test", "k", transport=transport) as mj:
        path = await mj.download("42", tmp_path)
    assert path == tmp_path / "42.png"
    assert [r.method for r in transport.requests] == ["GET", "GET"]
    assert "Authorization" not in transport.requests[1].headers


async def test_closed_client_refuses(tmp_path: Path) -> None:
    """download on a closed client raises ClientClosedError."""
    mj = mjasync.Client("http://mj.test", transport=MockTransport(lambda r: json_response({})))
    await mj.aclose()
    with pytest.raises(mjasync.ClientClosedError):
        await mj.download(done("http://mj.test/x.png"), tmp_path)


@pytest.mark.parametrize(
    ("body", "complete"),
    [
        (PNG, True),
        (PNG[:-1], False),
        (JPEG, True),
        (JPEG + b"\x00\x00", True),
        (JPEG[:-1], False),
        (WEBP, True),
        (WEBP[:-1], False),
        (GIF, True),
        (GIF[:-1], False),
        (b"hello world, not an image", False),
    ],
)
def test_is_complete_image(body: bytes, complete: bool) -> None:
    """Completeness is decided from magic bytes plus the format's end marker or length."""
    assert is_complete_image(body[:32], body[-32:], len(body)) is complete


async def test_many_concurrent_downloads(host: ImageHost, tmp_path: Path) -> None:
    """Twenty concurrent downloads of different tasks each land complete and alone."""
    results: list[Path] = []
    async with client_for(host) as mj:

        def job(i: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                results.append(await mj.download(done(host.url("ok.png"), f"t{i}"), tmp_path))

            return run

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(job(i))
    assert len(results) == 20
    assert leftovers(tmp_path) == sorted(f"t{i}.png" for i in range(20))


# -- videos (#7) -------------------------------------------------------------------------


def video_task(
    url: str, *, action: str = "VIDEO", image_url: str | None = "same", task_id: str = "v1"
) -> mjasync.Task:
    """A SUCCESS video task; by default its imageUrl is the video itself (as on trueai)."""
    return mjasync.Task(
        id=task_id,
        action=action,
        status=mjasync.TaskStatus.SUCCESS,
        image_url=url if image_url == "same" else image_url,
        video_urls=(url,),
    )


@pytest.mark.parametrize(
    ("name", "suffix", "body"),
    [("clip.mp4", ".mp4", MP4), ("clip.webm", ".webm", WEBM), ("clip.mov", ".mov", MOV)],
)
async def test_video_task_saves_its_video_by_default(
    host: ImageHost, tmp_path: Path, name: str, suffix: str, body: bytes
) -> None:
    """A VIDEO task downloads its video with the suffix its content type names."""
    async with client_for(host) as mj:
        path = await mj.download(video_task(host.url(name)), tmp_path)
    assert path == tmp_path / f"v1{suffix}"
    assert path.read_bytes() == body
    assert host.headers[name]["Accept"] == "video/*"
    assert leftovers(tmp_path) == [path.name]


async def test_video_upscale_defaults_to_its_video(host: ImageHost, tmp_path: Path) -> None:
    """A task whose only result is a video (an UPSCALE of a video) saves the video."""
    async with client_for(host) as mj:
        path = await mj.download(video_task(host.url("clip.mp4"), action="UPSCALE"), tmp_path)
    assert path.suffix == ".mp4"


async def test_video_task_with_a_thumbnail_image_saves_either(
    host: ImageHost, tmp_path: Path
) -> None:
    """A VIDEO task with a separate image: the video by default, the image with kind='image'."""
    task = video_task(host.url("clip.mp4"), image_url=host.url("ok.png"))
    async with client_for(host) as mj:
        video = await mj.download(task, tmp_path)
        image = await mj.download(task, tmp_path, kind="image")
    assert (video.name, image.name) == ("v1.mp4", "v1.png")


async def test_image_download_of_a_video_image_url_is_refused(
    host: ImageHost, tmp_path: Path
) -> None:
    """trueai's VIDEO imageUrl is the video: kind='image' refuses before any request."""
    async with client_for(host) as mj:
        with pytest.raises(mjasync.InvalidRequestError, match="kind='video'"):
            await mj.download(video_task(host.url("clip.mp4")), tmp_path, kind="image")
    assert sum(host.hits.values()) == 0


async def test_video_download_of_a_task_without_video_is_refused(
    host: ImageHost, tmp_path: Path
) -> None:
    """kind='video' on an image task is an InvalidRequestError; nothing is fetched."""
    async with client_for(host) as mj:
        with pytest.raises(mjasync.InvalidRequestError, match="has no video"):
            await mj.download(done(host.url("ok.png")), tmp_path, kind="video")
        with pytest.raises(mjasync.InvalidRequestError, match="kind must be"):
            await mj.download(done(host.url("ok.png")), tmp_path, kind="gif")  # type: ignore[arg-type]
    assert sum(host.hits.values()) == 0


@pytest.mark.parametrize(
    ("name", "kind", "match"),
    [
        ("png-as-video", "video", "expected a video"),
        ("mp4-as-image", "image", "got a video"),
        ("mp4-labelled-webm", "video", "body is a MP4"),
        ("avi", "video", "unsupported video type"),
        ("cut.mp4", "video", "incomplete"),
        ("cut.webm", "video", "incomplete"),
    ],
)
async def test_wrong_or_broken_videos_raise_and_leave_no_file(
    host: ImageHost, tmp_path: Path, name: str, kind: str, match: str
) -> None:
    """Wrong types either way, mislabelled and truncated videos raise DecodeError, no file."""
    task = video_task(host.url(name), image_url=None) if kind == "video" else done(host.url(name))
    async with client_for(host) as mj:
        with pytest.raises(mjasync.DecodeError, match=match):
            await mj.download(task, tmp_path, kind=kind)  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []


async def test_existing_complete_video_is_not_downloaded_again(
    host: ImageHost, tmp_path: Path
) -> None:
    """A rerun finds the saved video complete and sends nothing; a truncated one is replaced."""
    async with client_for(host) as mj:
        first = await mj.download(video_task(host.url("clip.mp4")), tmp_path)
        again = await mj.download(video_task(host.url("clip.mp4")), tmp_path)
        assert (first, host.hits["clip.mp4"]) == (again, 1)
        first.write_bytes(MP4[:-1])
        await mj.download(video_task(host.url("clip.mp4")), tmp_path)
    assert host.hits["clip.mp4"] == 2
    assert first.read_bytes() == MP4


def write(tmp_path: Path, body: bytes) -> Path:
    """*body* in a fresh file."""
    path = tmp_path / "video.bin"
    path.write_bytes(body)
    return path


LARGE_BOX = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + 40) + bytes(40)


@pytest.mark.parametrize(
    ("body", "complete"),
    [
        pytest.param(MP4, True, id="mp4"),
        pytest.param(MP4[:-1], False, id="mp4-cut-in-mdat"),
        pytest.param(MP4 + b"\x00", False, id="mp4-trailing-byte"),
        pytest.param(MP4[:32], False, id="mp4-cut-after-ftyp"),
        pytest.param(box(b"ftyp", b"isom"), False, id="ftyp-alone"),
        pytest.param(box(b"ftyp", b"isom") + LARGE_BOX, True, id="64-bit-box"),
        pytest.param(box(b"ftyp", b"isom") + b"\x00\x00\x00\x00mdat" + bytes(9), True, id="size-0"),
        pytest.param(box(b"ftyp", b"isom") + b"\x00\x00\x00\x04mdat", False, id="box-too-small"),
        pytest.param(
            box(b"ftyp", b"isom") + b"\x00\x00\x00\x10\x00\x01\x02\x03" + bytes(8),
            False,
            id="binary-type",
        ),
        pytest.param(box(b"moov", b"") + box(b"mdat", b"x"), True, id="quicktime-without-ftyp"),
        pytest.param(box(b"ftyp", b"isom") + box(b"mdat", b"x")[:-1], False, id="ftyp-then-cut"),
        pytest.param(MOV, True, id="quicktime"),
        pytest.param(MOV[:-5], False, id="quicktime-cut"),
        pytest.param(WEBM, True, id="webm"),
        pytest.param(WEBM[:-1], False, id="webm-cut"),
        pytest.param(
            WEBM[:36] + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff",
            True,
            id="webm-unknown-size",
        ),
        pytest.param(WEBM[:30], False, id="webm-cut-in-header"),
        pytest.param(PNG, False, id="png"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_is_complete_video(tmp_path: Path, body: bytes, complete: bool) -> None:
    """MP4/QuickTime boxes must tile the file (ftyp first for MP4); WebM's segment must fit."""
    assert is_complete_video(write(tmp_path, body)) is complete


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        (mjasync.Task(id="1", action="VIDEO"), "video"),
        (mjasync.Task(id="1", action="VIDEO_EXTEND", image_url="https://x/a.png"), "video"),
        (mjasync.Task(id="1", action="UPSCALE", image_url="v", video_urls=("v",)), "video"),
        (mjasync.Task(id="1", action="UPSCALE", video_urls=("v",)), "video"),
        (mjasync.Task(id="1", action="IMAGINE", image_url="i", video_urls=("v",)), "image"),
        (mjasync.Task(id="1", action="IMAGINE", image_url="i"), "image"),
        (mjasync.Task(id="1"), "image"),
    ],
)
def test_default_kind(task: mjasync.Task, kind: str) -> None:
    """VIDEO tasks and tasks whose only result is a video default to the video."""
    assert default_kind(task) == kind


# -- names (#8, #9) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "prefix", "stem"),
    [
        ("1748339029401828", None, "1748339029401828"),
        ("1748339029401828", "U2", "U2-1748339029401828"),
        ("../../etc/evil", None, "_.._etc_evil"),
        ("a b/é", "zoom out 1.5x", "zoom_out_1.5x-a_b__"),
        ("...", None, "task"),
    ],
)
def test_file_stem(task: str, prefix: str | None, stem: str) -> None:
    """The task id (with an optional prefix), every unsafe character replaced by '_'."""
    assert mjasync.file_stem(task, prefix=prefix) == stem
    assert mjasync.file_stem(mjasync.Task(id=task), prefix=prefix) == stem


def test_file_stem_shortens_long_names_keeping_them_apart() -> None:
    """Past 200 bytes: a prefix of the name plus a hash of all of it."""
    first = mjasync.file_stem("7" * 300 + "a")
    second = mjasync.file_stem("7" * 300 + "b")
    assert first != second
    assert len(first.encode()) == len(second.encode()) == 200
    assert first.startswith("7" * 150)


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_file_stem_refuses_empty_ids_and_prefixes(bad: str | None) -> None:
    """An empty id, or a prefix with nothing usable in it, is an InvalidRequestError."""
    with pytest.raises(mjasync.InvalidRequestError):
        mjasync.file_stem(bad)  # type: ignore[arg-type]
    with pytest.raises(mjasync.InvalidRequestError):
        mjasync.file_stem("1", prefix=bad or "...")


async def test_server_chosen_long_ids_are_saved_under_short_names(
    host: ImageHost, tmp_path: Path
) -> None:
    """A 300-character task id no longer fails with 'file name too long' (#8)."""
    ids = ["9" * 299 + "1", "9" * 299 + "2"]
    async with client_for(host) as mj:
        paths = [await mj.download(done(host.url("ok.png"), task_id=i), tmp_path) for i in ids]
        again = await mj.download(done(host.url("ok.png"), task_id=ids[0]), tmp_path)
    assert paths[0] != paths[1]
    assert again == paths[0]
    assert host.hits["ok.png"] == 2
    for path in paths:
        assert path.suffix == ".png"
        assert len(path.name.encode()) <= 255
        assert path.read_bytes() == PNG
    assert leftovers(tmp_path) == sorted(p.name for p in paths)


async def test_long_unicode_filename_is_shortened_on_a_character_boundary(
    host: ImageHost, tmp_path: Path
) -> None:
    """A caller's 400-byte UTF-8 name is cut between characters and keeps its new suffix."""
    name = "狐" * 140 + ".png"
    async with client_for(host) as mj:
        path = await mj.download(done(host.url("pic.webp")), tmp_path, filename=name)
    assert path.suffix == ".webp"
    assert path.name.startswith("狐" * 50)
    assert len(path.name.encode()) <= 255


async def test_a_file_where_the_directory_should_be(host: ImageHost, tmp_path: Path) -> None:
    """LocalFileError (an MJError and an OSError) names the path; nothing is fetched."""
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    async with client_for(host) as mj:
        for directory in (blocker, blocker / "inner"):
            with pytest.raises(mjasync.LocalFileError) as caught:
                await mj.download(done(host.url("ok.png")), directory)
            assert isinstance(caught.value, OSError)
            assert isinstance(caught.value, mjasync.MJError)
            assert caught.value.filename == str(directory)
            assert str(directory) in str(caught.value)
    assert sum(host.hits.values()) == 0


@pytest.mark.parametrize("failing", ["replace", "fsync"])
async def test_disk_errors_are_local_file_errors_and_leave_nothing(
    host: ImageHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """ENOSPC while saving is a LocalFileError naming the file; the temporary is removed."""

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(f"mjasync._download.os.{failing}", full)
    async with client_for(host) as mj:
        with pytest.raises(mjasync.LocalFileError, match="No space left") as caught:
            await mj.download(done(host.url("ok.png")), tmp_path)
    assert caught.value.errno == errno.ENOSPC
    assert str(tmp_path) in str(caught.value.filename)
    assert host.hits["ok.png"] == 1  # a local failure is not retried
    assert leftovers(tmp_path) == []


def test_local_file_error_pickles() -> None:
    """LocalFileError keeps its message, path, errno and strerror through pickle."""
    error = mjasync.LocalFileError("could not save /x: boom", path="/x", errno=28, strerror="boom")
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own object)
    assert (str(clone), clone.filename, clone.errno, clone.strerror) == (
        "could not save /x: boom",
        "/x",
        28,
        "boom",
    )
