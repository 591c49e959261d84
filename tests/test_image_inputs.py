"""Image inputs per route: URLs stay URLs where the server takes them; downloads are bounded.

Where each route takes a URL (reference §15.9): Midjourney reads image URLs at the start of
the prompt; trueai takes describe ``link``, face swap ``sourceUrl``/``targetUrl``, blend
URLs in ``base64Array``, video ``image``/``endImage`` and edit ``image`` URLs. Servers
without the URL form refuse with code 4 naming base64; then, and only then, the client
downloads the image (streamed, capped) and sends it as base64.
"""

from __future__ import annotations

import base64
import json
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync import InvalidRequestError, RetryPolicy, SubmitRejectedError
from mjasync.simulator import Simulator

PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
JPEG = b"\xff\xd8\xff\xdb" + bytes(40)
MiB = 1024 * 1024
FAST = RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.002)

Answer = Callable[[str, dict[str, Any]], web.Response]


def data_uri(mime: str, data: bytes) -> str:
    """The data URI the client sends for *data*."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def accept(_: str, __: dict[str, Any]) -> web.Response:
    """Every submit is accepted."""
    return web.json_response({"code": 1, "description": "提交成功", "result": "1"})


def refuse_urls(description: str, status: int = 200) -> Answer:
    """A server without URL fields: any body holding a URL is refused with code 4."""

    def answer(path: str, body: dict[str, Any]) -> web.Response:
        if "http" in json.dumps(body):
            payload = {"code": 4, "description": description}
            return web.json_response(payload, status=status)
        return accept(path, body)

    return answer


class Proxy:
    """A proxy stand-in that records submit bodies, plus an image host on the same server."""

    def __init__(self, answer: Answer = accept) -> None:
        self.answer = answer
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.hits: Counter[str] = Counter()
        self.sent = 0
        app = web.Application()
        app.router.add_post("/mj/{tail:.+}", self.submit)
        app.router.add_get("/img/{name}", self.image)
        self.server = TestServer(app)

    def url(self, name: str) -> str:
        """An image URL on this server."""
        return str(self.server.make_url(f"/img/{name}"))

    async def submit(self, request: web.Request) -> web.Response:
        """Record and answer one submit."""
        path = "/" + request.match_info["tail"]
        body = await request.json()
        self.bodies.append((path, body))
        return self.answer(path, body)

    async def image(self, request: web.Request) -> web.StreamResponse:
        """Serve an image; ``endless``/``declared-huge`` never stop until the client leaves."""
        name = request.match_info["name"]
        self.hits[name] += 1
        if name in {"endless", "declared-huge"}:
            return await self._endless(request, declared=name == "declared-huge")
        body = JPEG if name.endswith(".jpg") else PNG
        return web.Response(body=body, content_type="image/jpeg" if body is JPEG else "image/png")

    async def _endless(self, request: web.Request, *, declared: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if declared:
            response.content_length = 10 * 1024 * MiB
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = PNG + bytes(64 * 1024 - len(PNG))
        filler = bytes(64 * 1024)
        # Bounded: 256 MiB is far past any cap here, and the loop ends when the client leaves.
        try:
            await response.write(chunk)
            self.sent += len(chunk)
            while self.sent < 256 * MiB:
                await response.write(filler)
                self.sent += len(filler)
        except (ConnectionError, RuntimeError):
            pass
        return response


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    """A running Proxy that accepts everything (tests may swap ``answer``)."""
    server = Proxy()
    await server.server.start_server()
    try:
        yield server
    finally:
        await server.server.close()


def client(proxy: Proxy, **options: Any) -> mjasync.Client:
    """A client for *proxy*."""
    return mjasync.Client(str(proxy.server.make_url("/")), "k", **{"retry": FAST, **options})


# -- URLs stay URLs ------------------------------------------------------------------------


async def test_imagine_puts_urls_at_the_start_of_the_prompt(proxy: Proxy) -> None:
    """URLs lead the prompt in order; bytes go in base64Array; nothing is downloaded."""
    first, second = proxy.url("a.png"), proxy.url("b.jpg")
    async with client(proxy) as mj:
        await mj.imagine("  a red fox --ar 3:2", images=[first, PNG, f" {second} "])
        await mj.imagine("a cat", images=[first])
    assert proxy.bodies == [
        (
            "/submit/imagine",
            {
                "prompt": f"{first} {second} a red fox --ar 3:2",
                "base64Array": [data_uri("image/png", PNG)],
            },
        ),
        ("/submit/imagine", {"prompt": f"{first} a cat"}),
    ]
    assert sum(proxy.hits.values()) == 0


async def test_trueai_url_fields(proxy: Proxy) -> None:
    """describe link, swap sourceUrl/targetUrl, blend/video/edit URLs: sent as URLs."""
    a, b = proxy.url("a.png"), proxy.url("b.png")
    async with client(proxy) as mj:
        await mj.describe(a)
        await mj.swap_face(a, PNG)
        await mj.blend([a, b])
        await mj.video("waves", image=a, end_image=b)
        await mj.edit("make it blue", a)
    assert proxy.bodies == [
        ("/submit/describe", {"link": a}),
        ("/insight-face/swap", {"sourceUrl": a, "targetBase64": data_uri("image/png", PNG)}),
        ("/submit/blend", {"base64Array": [a, b]}),
        ("/submit/video", {"prompt": "waves", "image": a, "endImage": b}),
        ("/submit/edits", {"prompt": "make it blue", "image": a}),
    ]
    assert sum(proxy.hits.values()) == 0


async def test_describe_on_a_server_without_link_downloads_once_then_up_front(
    proxy: Proxy,
) -> None:
    """novicezk's "base64不能为空": the URL is downloaded and sent as base64; then remembered."""
    proxy.answer = refuse_urls("base64不能为空")
    url = proxy.url("a.jpg")
    async with client(proxy) as mj:
        first = await mj.describe(url)
        second = await mj.describe(url)
    assert first.task_id == second.task_id == "1"
    assert proxy.bodies == [
        ("/submit/describe", {"link": url}),
        ("/submit/describe", {"base64": data_uri("image/jpeg", JPEG)}),
        ("/submit/describe", {"base64": data_uri("image/jpeg", JPEG)}),
    ]
    assert proxy.hits["a.jpg"] == 2


async def test_swap_through_new_api_sends_both_base64_fields(proxy: Proxy) -> None:
    """new-api's HTTP 400 "sour_base64_and_target_base64_is_required": both as base64."""
    proxy.answer = refuse_urls("sour_base64_and_target_base64_is_required", status=400)
    async with client(proxy) as mj:
        await mj.swap_face(proxy.url("a.png"), proxy.url("b.jpg"))
    assert proxy.bodies[1] == (
        "/insight-face/swap",
        {
            "sourceBase64": data_uri("image/png", PNG),
            "targetBase64": data_uri("image/jpeg", JPEG),
        },
    )
    assert len(proxy.bodies) == 2


async def test_mixed_blend_falls_back_without_remembering(proxy: Proxy) -> None:
    """A refused body that also held data URIs proves nothing about URLs: not remembered."""
    proxy.answer = refuse_urls("base64格式错误")
    url = proxy.url("a.png")
    async with client(proxy) as mj:
        await mj.blend([url, JPEG])
        await mj.blend([url, JPEG])
    expected = {"base64Array": [data_uri("image/png", PNG), data_uri("image/jpeg", JPEG)]}
    assert [body for _, body in proxy.bodies] == [
        {"base64Array": [url, data_uri("image/jpeg", JPEG)]},
        expected,
        {"base64Array": [url, data_uri("image/jpeg", JPEG)]},
        expected,
    ]


@pytest.mark.parametrize(
    ("description", "code"),
    [("禁止上传", 4), ("base64 is fine but the queue is full", 23), ("无可用的账号实例", 3)],
)
async def test_other_refusals_are_raised_without_a_second_submit(
    proxy: Proxy, description: str, code: int
) -> None:
    """Only a code-4 refusal naming base64 downloads and resends; others are raised."""

    def answer(_: str, __: dict[str, Any]) -> web.Response:
        return web.json_response({"code": code, "description": description})

    proxy.answer = answer
    # queue_full_wait=0: a full queue is raised at once instead of waited through.
    async with client(proxy, retry=RetryPolicy(attempts=1), queue_full_wait=0) as mj:
        with pytest.raises(SubmitRejectedError):
            await mj.describe(proxy.url("a.png"))
    assert len(proxy.bodies) == 1
    assert sum(proxy.hits.values()) == 0


@pytest.mark.parametrize(
    "url",
    ["https://", "http:///a.png", "https://cdn.test/a b.png", "https://cdn.test/\x07.png"],
)
async def test_unusable_urls_are_refused_before_sending(proxy: Proxy, url: str) -> None:
    """A URL without a host, or with whitespace or control characters, is refused."""
    async with client(proxy) as mj:
        with pytest.raises(InvalidRequestError, match="URL"):
            await mj.imagine("a cat", images=[url])
        with pytest.raises(InvalidRequestError, match="URL"):
            await mj.describe(url)
    assert proxy.bodies == []


@pytest.mark.parametrize(
    ("dialect", "auth", "submits"),
    [
        ("trueai", "authorization", 1),
        ("oss", "mj-api-secret", 2),
        ("plus", "mj-api-secret", 2),
        ("newapi", "bearer", 2),
    ],
)
async def test_describe_url_against_each_simulated_dialect(
    proxy: Proxy, dialect: str, auth: str, submits: int
) -> None:
    """trueai takes the link; the others refuse it and get the downloaded image."""
    async with (
        Simulator(dialect=dialect, api_key="key", time_scale=0.005) as sim,
        mjasync.Client(sim.base_url, "key", auth=auth, retry=FAST) as mj,  # type: ignore[arg-type]
    ):
        submission = await mj.describe(proxy.url("a.png"))
    assert submission.task_id
    assert sim.requests["POST /mj/submit/describe"] == submits
    assert proxy.hits["a.png"] == submits - 1


# -- bounded reads -------------------------------------------------------------------------


async def test_endless_body_is_cut_off_at_the_cap(proxy: Proxy) -> None:
    """An endless image stops being read at the cap: little sent, memory near the cap."""
    cap = 2 * MiB
    async with client(proxy, max_image_bytes=cap) as mj:
        tracemalloc.start()
        try:
            with pytest.raises(InvalidRequestError, match="larger than the limit"):
                await mj.upload([proxy.url("endless")])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert proxy.bodies == []
    # Socket buffers hold a few MiB on loopback; an unbounded read would take 256 MiB.
    assert proxy.sent < 32 * MiB
    assert peak < 4 * cap


async def test_declared_length_over_the_cap_is_refused_before_reading(proxy: Proxy) -> None:
    """A Content-Length over the cap is refused from the headers, in a fallback too."""
    proxy.answer = refuse_urls("base64不能为空")
    async with client(proxy, max_image_bytes=MiB) as mj:
        with pytest.raises(InvalidRequestError, match=r"10,737,418,240 bytes; the limit is"):
            await mj.upload(proxy.url("declared-huge"))
        with pytest.raises(InvalidRequestError, match=r"10,737,418,240 bytes; the limit is"):
            await mj.describe(proxy.url("declared-huge"))
    assert proxy.hits["declared-huge"] == 2
    assert proxy.bodies == [("/submit/describe", {"link": proxy.url("declared-huge")})]
    assert proxy.sent < 32 * MiB


async def test_a_body_that_is_no_image_is_refused_after_its_first_bytes(proxy: Proxy) -> None:
    """The first chunk decides: a page of HTML is not read to the cap."""
    app = web.Application()
    written = 0

    async def html(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while written < 64 * MiB:
                await response.write(b"<html>" + bytes(64 * 1024))
                written += 64 * 1024
        except (ConnectionError, RuntimeError):
            pass
        return response

    app.router.add_get("/page", html)
    async with TestServer(app) as host, client(proxy, max_image_bytes=32 * MiB) as mj:
        with pytest.raises(InvalidRequestError, match="not a PNG, JPEG, WEBP or GIF"):
            await mj.upload(str(host.make_url("/page")))
    assert written < 32 * MiB


async def test_big_file_is_refused_from_its_size_without_reading(
    proxy: Proxy, tmp_path: Path
) -> None:
    """A file over the cap is refused from stat: a 1 GiB sparse file allocates nothing."""
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(1024 * MiB)
    async with client(proxy, max_image_bytes=MiB) as mj:
        tracemalloc.start()
        try:
            with pytest.raises(InvalidRequestError, match=r"1,073,741,824 bytes; the limit is"):
                await mj.imagine("a cat", images=[path])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < MiB
    assert proxy.bodies == []
    path.unlink()  # a sparse file: free it at once


# -- end to end against the simulator ------------------------------------------------------


@pytest.mark.parametrize(("dialect", "auth"), [("trueai", "authorization"), ("newapi", "bearer")])
async def test_video_from_url_to_saved_mp4(
    proxy: Proxy, tmp_path: Path, dialect: str, auth: str
) -> None:
    """A video from a URL first frame (sent as a URL), awaited and saved as .mp4."""
    poll = mjasync.PollPolicy(interval=0.01, max_interval=0.02, first_poll=0.0)
    async with (
        Simulator(dialect=dialect, api_key="key", time_scale=0.005) as sim,
        mjasync.Client(sim.base_url, "key", auth=auth, retry=FAST, poll=poll) as mj,  # type: ignore[arg-type]
    ):
        task = await mj.await_task(await mj.video("waves", image=proxy.url("a.png")), timeout=10)
        path = await mj.download(task, tmp_path)
    assert task.video_url is not None
    assert path == tmp_path / f"{mjasync.file_stem(task)}.mp4"
    assert path.read_bytes()[4:8] == b"ftyp"
    assert sum(proxy.hits.values()) == 0
