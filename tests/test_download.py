"""Client.download: streamed, validated, atomic, never outside the directory."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync._download import is_complete_image
from mjasync.testing import MockTransport, json_response, task_payload

FAST_RETRY = mjasync.RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.005)


def make_png(seed: int = 1, size: int = 8) -> bytes:
    """A small valid PNG whose colour derives from *seed*."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes([seed % 256, 40, 200]) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


PNG = make_png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x11" * 200 + b"\xff\xd9"
WEBP_BODY = b"WEBPVP8 " + b"\x00" * 20
WEBP = b"RIFF" + len(WEBP_BODY).to_bytes(4, "little") + WEBP_BODY
GIF = b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00" + b"\x2c" + b"\x00" * 10 + b"\x3b"


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
