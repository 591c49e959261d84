"""A server that answers with broken HTTP, or echoes the key: every failure is an MJError,
and nothing reachable from it (cause, context, args, attributes, the printed traceback)
holds the key. A raw asyncio TCP server on loopback sends the answers byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from _shared import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mjasync
from mjasync import MJError, RetryPolicy

KEY = "sk-hostile-0123456789abcdef"
AUTH_STYLES = ["bearer", "authorization", "mj-api-secret"]
Answer = Callable[[bytes], bytes]


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[str]:
    """A loopback TCP server that reads a request and writes ``answer(request)``, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.read(65536)
            writer.write(answer(request))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def header_line(request: bytes, name: bytes) -> bytes:
    """The request's own header line *name* (the key travels in it), as the server saw it."""
    for line in request.split(b"\r\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line
    return b""


def everything_reachable(error: BaseException) -> list[str]:
    """Every text a person or a log could get from *error*: the whole chain, walked."""
    texts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    stack: list[object] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts.append(repr(current))
        if isinstance(current, BaseException):
            texts += [str(current), repr(current.args)]
            texts += [repr(note) for note in getattr(current, "__notes__", [])]
            stack += [current.__cause__, current.__context__]
            stack += list(vars(current).values())
            stack += list(current.args)
    return texts


def assert_clean(error: BaseException) -> None:
    """*error* is an MJError with no foreign exception chained, and no key anywhere."""
    assert isinstance(error, MJError), repr(error)
    chained = [error.__cause__, error.__context__]
    assert all(link is None or isinstance(link, MJError) for link in chained), chained
    for text in everything_reachable(error):
        assert KEY not in text, text


async def provoke(base_url: str, auth: str) -> list[BaseException]:
    """A submit (never resent) and a fetch (retried) against *base_url*; their failures."""
    failures: list[BaseException] = []
    retry = RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001)
    async with mjasync.Client(base_url, KEY, auth=auth, retry=retry, timeout=5) as mj:
        for call in (lambda: mj.imagine("a cat"), lambda: mj.fetch("1700000000000001")):
            try:
                await call()
            except BaseException as error:  # every failure is judged by the caller
                failures.append(error)
    return failures


MALFORMED = {
    "bad-status-line": lambda r: b"HTTP/1.1 abc OK\r\n\r\n",
    "bad-content-length": lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: xyz\r\n\r\n{}",
    "header-without-colon": lambda r: b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n{}",
    "non-http": lambda r: b"SSH-2.0-OpenSSH_9.6\r\n",
    "short-body": lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}",
    "nothing": lambda r: b"",
    "bad-chunk": lambda r: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    # The server quotes the request's own auth line back inside a broken answer.
    "echo-in-status-line": lambda r: b"HTTP/1.1 " + header_line(r, b"authorization") + b"\r\n\r\n",
    "echo-as-bad-header": lambda r: (
        b"HTTP/1.1 200 OK\r\n"
        + (header_line(r, b"authorization") or header_line(r, b"mj-api-secret")).replace(b":", b"")
        + b"\r\n\r\n"
    ),
    "echo-in-html-500": lambda r: (
        b"HTTP/1.1 500 Oops\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<pre>"
        + r
        + b"</pre>"
    ),
    "echo-in-json-400": lambda r: (
        b'HTTP/1.1 400 Bad\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"code":4,'
        b'"description":"' + header_line(r, b"authorization").replace(b'"', b"") + b'"}'
    ),
}


@pytest.mark.parametrize("auth", AUTH_STYLES)
@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_answers_never_carry_the_key(answer: Answer, auth: str) -> None:
    """Every malformed answer raises an MJError whose whole chain is free of the key."""
    async with raw_server(answer) as base_url:
        failures = await provoke(base_url, auth)

    assert len(failures) == 2
    for error in failures:
        assert_clean(error)


async def test_a_malformed_answer_is_maybe_sent_not_retried_for_a_submit() -> None:
    """A garbled answer came from the server: the submit may exist, so it is not resent."""
    seen: list[bytes] = []

    def answer(request: bytes) -> bytes:
        seen.append(request)
        return b"HTTP/1.1 abc OK\r\n\r\n"

    async with (
        raw_server(answer) as base_url,
        mjasync.Client(base_url, KEY, retry=RetryPolicy(attempts=3, backoff=0.001)) as mj,
    ):
        with pytest.raises(mjasync.TransportError) as info:
            await mj.imagine("a cat")

    assert mjasync.delivery_of(info.value) is mjasync.Delivery.MAYBE_SENT
    assert "malformed" in str(info.value)
    assert len(seen) == 1


# -- the same, over generated answers --------------------------------------------------------

STATUS_LINES = st.one_of(
    st.sampled_from(
        [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 401 Unauthorized",
            b"HTTP/1.1 404 Not Found",
            b"HTTP/1.1 500 Internal Server Error",
            b"HTTP/1.0 200",
            b"HTTP/1.1 99999 Huge",
            b"HTTP/1.1 -1 Negative",
            b"HTTP/2 200 OK",
            b"ICY 200 OK",
            b"",
            b"HTTP/1.1 200 OK\x00",
        ]
    ),
    st.binary(max_size=40),
    st.builds(lambda text: b"HTTP/1.1 " + text, st.binary(max_size=20)),
)
ECHO = "\0ECHO\0"  # replaced by the request's own Authorization / mj-api-secret line
HEADER_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Content-Type: application/json",
                "Content-Type: text/html",
                "Content-Length: 2",
                "Content-Length: 9999",
                "Content-Length: -5",
                "Content-Length: 2, 3",
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: gzip",
                "Content-Encoding: gzip",
                "Connection: close",
                "NoColonAtAll",
                ": empty name",
                "X-Long: " + "a" * 9000,
                "Retry-After: soon",
                ECHO,
            ]
        ),
        st.text(max_size=30),
    ),
    max_size=5,
)
BODIES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"{}",
            b'{"code": 1, "result": "1700000000000001"}',
            b'{"code": 4, "description": "\xe5\x8f\x82\xe6\x95\xb0\xe9\x94\x99\xe8\xaf\xaf"}',
            b"<html>hi</html>",
            b"zz\r\n",
            b"0\r\n\r\n",
            ECHO.encode(),
        ]
    ),
    st.binary(max_size=60),
)


def build_answer(status: bytes, headers: list[str], body: bytes) -> Answer:
    """An answer from generated parts; ECHO becomes the request's own auth line."""

    def answer(request: bytes) -> bytes:
        echo = header_line(request, b"authorization") or header_line(request, b"mj-api-secret")
        lines = [
            echo if line == ECHO else line.encode("utf-8", "surrogateescape") for line in headers
        ]
        head = b"\r\n".join([status, *lines])
        return head + b"\r\n\r\n" + body.replace(ECHO.encode(), echo)

    return answer


@settings(
    max_examples=examples(25),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    status=STATUS_LINES,
    headers=HEADER_LINES,
    body=BODIES,
    auth=st.sampled_from(AUTH_STYLES),
)
def test_generated_malformed_answers_never_carry_the_key(
    status: bytes, headers: list[str], body: bytes, auth: str
) -> None:
    """Whatever the server sends, a failure is an MJError whose chain holds no key."""

    async def run() -> list[BaseException]:
        async with raw_server(build_answer(status, headers, body)) as base_url:
            return await provoke(base_url, auth)

    for error in asyncio.run(run()):
        assert_clean(error)
