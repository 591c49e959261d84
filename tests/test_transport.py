"""AiohttpTransport against real in-process servers: round trips, timeouts, failures, sessions."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import pytest
from _shared import ONE_TRY
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestServer

import mjasync
from mjasync import (
    AiohttpTransport,
    ConnectError,
    Request,
    RequestTimeoutError,
    RetryPolicy,
    TransportError,
)
from mjasync.testing import submit_payload, task_payload


def proxy_app(seen: list[web.Request]) -> web.Application:
    """A tiny proxy: imagine answers a submit, fetch answers a task."""

    async def imagine(request: web.Request) -> web.Response:
        seen.append(request)
        body = await request.json()
        return web.json_response(submit_payload("1700000000000001", description=body["prompt"]))

    async def fetch(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(task_payload(request.match_info["id"], "SUCCESS"))

    app = web.Application()
    app.router.add_post("/mj/submit/imagine", imagine)
    app.router.add_get("/mj/task/{id}/fetch", fetch)
    return app


async def test_round_trip_with_headers() -> None:
    """A submit and a fetch go through aiohttp with auth, User-Agent, extra headers and JSON."""
    seen: list[web.Request] = []

    async with (
        TestServer(proxy_app(seen)) as server,
        mjasync.Client(
            str(server.make_url("/mj")), "s3cret", auth="mj-api-secret", headers={"X-Trace": "7"}
        ) as mj,
    ):
        submission = await mj.imagine("a lighthouse")
        task = await mj.fetch(submission)

    assert submission.description == "a lighthouse"
    assert task.id == "1700000000000001"
    post, get = seen
    assert post.headers["mj-api-secret"] == "s3cret"
    assert post.headers["User-Agent"] == f"mjasync/{mjasync.__version__}"
    assert post.headers["X-Trace"] == "7"
    assert post.content_type == "application/json"
    assert get.method == "GET"
    assert get.headers.get("Content-Length") in {None, "0"}


async def test_transport_send_returns_status_headers_and_bytes() -> None:
    """send() returns the status, lower-cased headers and the raw body."""

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, body=b"\x00\x01", headers={"X-Thing": "A"})

    app = web.Application()
    app.router.add_get("/x", teapot)

    async with TestServer(app) as server, AiohttpTransport() as transport:
        response = await transport.send(Request("GET", str(server.make_url("/x"))))

    assert (response.status, response.content) == (418, b"\x00\x01")
    assert response.headers["x-thing"] == "A"


async def test_stream_yields_the_body_in_chunks() -> None:
    """stream() yields the whole body in chunks without buffering it first."""
    payload = bytes(range(256)) * 1000

    async def download(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="image/png")

    app = web.Application()
    app.router.add_get("/img.png", download)

    async with TestServer(app) as server, AiohttpTransport() as transport:
        request = Request("GET", str(server.make_url("/img.png")))
        async with transport.stream(request) as response:
            chunks = [chunk async for chunk in response.iter_chunks(4096)]

    assert response.status == 200
    assert b"".join(chunks) == payload
    assert len(chunks) > 1


async def test_timeout_is_request_timeout_error() -> None:
    """A response slower than the timeout raises RequestTimeoutError (a TimeoutError)."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response(task_payload("1"))

    app = web.Application()
    app.router.add_get("/mj/task/{id}/fetch", slow)

    async with (
        TestServer(app) as server,
        mjasync.Client(str(server.make_url("/")), "k", timeout=0.05, retry=ONE_TRY) as mj,
    ):
        with pytest.raises(RequestTimeoutError) as info:
            await mj.fetch("1")

    assert isinstance(info.value, TimeoutError)
    assert not isinstance(info.value, ConnectError)


async def test_connection_refused_is_connect_error(free_tcp_port: int) -> None:
    """Nothing listening raises ConnectError: provably never sent."""
    async with mjasync.Client(f"http://127.0.0.1:{free_tcp_port}", "k", retry=ONE_TRY) as mj:
        with pytest.raises(ConnectError) as info:
            await mj.imagine("a cat")

    assert isinstance(info.value, ConnectionError)
    assert mj.requests_sent == 1


async def test_a_connect_error_says_why_and_which_host(free_tcp_port: int) -> None:
    """The transport names the cause and the host as attributes, not only in the text."""
    url = f"http://127.0.0.1:{free_tcp_port}/"
    async with mjasync.Client(url, "k", retry=ONE_TRY) as mj:
        with pytest.raises(ConnectError) as info:
            await mj.fetch("1")

    assert (info.value.reason, info.value.host) == (
        "connection refused",
        f"127.0.0.1:{free_tcp_port}",
    )


@pytest.mark.parametrize(
    ("message", "reason", "host"),
    [
        (
            "POST http://h:9/mj/submit/imagine: could not connect (ClientConnectorError: "
            "Cannot connect to host h:9 ssl:default [Connect call failed]); nothing was sent",
            "connection refused",
            "h:9",
        ),
        (
            "GET http://h/mj/x: no free connection within 60s (pool_timeout)",
            "no free connection",
            "h",
        ),
        ("refused", "connection refused", None),
        ("something else", "could not connect", None),
    ],
    ids=["aiohttp-text", "pool", "bare", "unknown"],
)
def test_a_connect_error_built_from_a_message_reads_it(
    message: str, reason: str, host: str | None
) -> None:
    """A custom transport's ConnectError(message) gets its reason and host from the text."""
    error = ConnectError(message)
    assert (error.reason, error.host) == (reason, host)
    explicit = ConnectError(message, reason="network unreachable", host="elsewhere:1")
    assert (explicit.reason, explicit.host) == ("network unreachable", "elsewhere:1")


async def test_connection_refused_submit_is_retried(free_tcp_port: int) -> None:
    """A refused submit is retried, because it never reached the server."""
    retry = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.002)

    async with mjasync.Client(f"http://127.0.0.1:{free_tcp_port}", "k", retry=retry) as mj:
        with pytest.raises(ConnectError):
            await mj.imagine("a cat")

    assert mj.requests_sent == 3


async def test_connection_closed_mid_response_is_transport_error_not_connect_error() -> None:
    """A connection dropped after the request arrived is a TransportError, never ConnectError."""
    arrived: list[str] = []

    async def half_answer(request: web.BaseRequest) -> web.StreamResponse:
        arrived.append(request.path)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"code": 1, "res')
        assert request.transport is not None
        request.transport.close()
        return response

    async with (
        RawTestServer(half_answer) as server,
        mjasync.Client(
            str(server.make_url("/")), "k", retry=RetryPolicy(attempts=3, backoff=0.001)
        ) as mj,
    ):
        with pytest.raises(TransportError) as info:
            await mj.imagine("a cat")

    assert not isinstance(info.value, ConnectError)
    assert arrived == ["/mj/submit/imagine"]  # a submit that may have landed is not resent


async def test_connection_closed_before_any_response_is_not_connect_error() -> None:
    """A server that hangs up without answering is a TransportError: queries retry, submits not."""
    calls: list[str] = []

    async def hang_up(request: web.BaseRequest) -> web.StreamResponse:
        calls.append(f"{request.method} {request.path}")
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with (
        RawTestServer(hang_up) as server,
        mjasync.Client(
            str(server.make_url("/")), "k", retry=RetryPolicy(attempts=2, backoff=0.001)
        ) as mj,
    ):
        with pytest.raises(TransportError) as fetch_info:
            await mj.fetch("1")
        fetches = len(calls)
        with pytest.raises(TransportError) as submit_info:
            await mj.imagine("a cat")

    assert not isinstance(fetch_info.value, ConnectError)
    assert not isinstance(submit_info.value, ConnectError)
    # aiohttp itself resends an idempotent GET once; our policy adds one more try.
    assert fetches >= 2
    assert calls[fetches:] == ["POST /mj/submit/imagine"]


async def test_caller_owned_session_is_not_closed() -> None:
    """A session passed in by the caller stays open after the client closes."""
    seen: list[web.Request] = []

    async with TestServer(proxy_app(seen)) as server, aiohttp.ClientSession() as session:
        async with mjasync.Client(str(server.make_url("/")), "k", session=session) as mj:
            await mj.fetch("1")

        assert not session.closed
        async with session.get(server.make_url("/mj/task/2/fetch")) as response:
            assert response.status == 200

    assert len(seen) == 2


async def test_own_session_is_closed_on_aclose() -> None:
    """The client's own session is closed by aclose, leaving nothing for the GC to warn about."""
    seen: list[web.Request] = []

    async with TestServer(proxy_app(seen)) as server:
        mj = mjasync.Client(str(server.make_url("/")), "k")
        async with mj:
            await mj.fetch("1")
            transport = mj._transport
            assert isinstance(transport, AiohttpTransport)
            session = transport._session
            assert session is not None
            open_while_in_use = not session.closed

    assert open_while_in_use
    assert session.closed
    assert transport._session is None
    del mj, transport, session
    gc.collect()  # an unclosed session would warn here, and warnings are errors


async def test_unused_client_opens_no_session() -> None:
    """A client that never sends opens no session, so closing it has nothing to leak."""
    async with mjasync.Client("http://mj.test", "k") as mj:
        transport = mj._transport
        assert isinstance(transport, AiohttpTransport)

    assert transport._session is None


async def test_cross_origin_redirect_drops_the_key_same_origin_keeps_it() -> None:
    """A GET redirected to another origin loses mj-api-secret; a same-origin hop keeps it."""
    seen: dict[str, str | None] = {}

    async def cdn(request: web.Request) -> web.Response:
        seen["cdn"] = request.headers.get("mj-api-secret")
        return web.json_response(task_payload("42"))

    cdn_app = web.Application()
    cdn_app.router.add_get("/task.json", cdn)
    async with TestServer(cdn_app) as cdn_server:
        cdn_url = str(cdn_server.make_url("/task.json"))

        async def hop(request: web.Request) -> web.Response:
            seen["hop"] = request.headers.get("mj-api-secret")
            raise web.HTTPFound(cdn_url)

        async def fetch(request: web.Request) -> web.Response:
            raise web.HTTPFound("/hop")

        app = web.Application()
        app.router.add_get("/mj/task/{id}/fetch", fetch)
        app.router.add_get("/hop", hop)
        async with (
            TestServer(app) as server,
            mjasync.Client(str(server.make_url("/")), "sk-SECRET", auth="mj-api-secret") as mj,
        ):
            task = await mj.fetch("42")

    assert task.id == "42"
    assert seen == {"hop": "sk-SECRET", "cdn": None}


async def test_submit_does_not_follow_redirects() -> None:
    """A submit answered with a redirect is reported, never resent to the new location."""
    hits: list[str] = []

    async def imagine(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPTemporaryRedirect("/elsewhere")

    app = web.Application()
    app.router.add_post("/mj/submit/imagine", imagine)
    app.router.add_post("/elsewhere", imagine)
    async with TestServer(app) as server, mjasync.Client(str(server.make_url("/")), "k") as mj:
        with pytest.raises(mjasync.APIError) as caught:
            await mj.imagine("a cat")

    assert caught.value.status == 307
    assert hits == ["/mj/submit/imagine"]
