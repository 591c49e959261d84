"""The transport seam: mjasync's own Request/Response, and the one aiohttp user.

Everything above this module speaks `Request` and `Response`; aiohttp types never leak
into a public signature, nor into an exception chain. `AiohttpTransport` maps aiohttp's
failures onto the error tree, keeping the one distinction the retry policy depends on:
`ConnectError` means the request provably never reached the server, any other
`TransportError` means it may have.

Two things about the pool. A request first waits for a free connection (bounded by
``pool_timeout``; running out is a `ConnectError`, since nothing was sent), and only
then does its ``timeout`` start: a submit queued behind busy connections must not time
out as if the server had it. And aiohttp's own exceptions are never chained onto ours:
a malformed answer's ``ClientResponseError`` carries the request headers, key included.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import re
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Self
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio
import attrs

from ._errors import ConnectError, ConnectReason, MJError, RequestTimeoutError, TransportError
from ._redact import display_url, host_of, redact_text, secrets_in_headers

__all__ = [
    "AiohttpTransport",
    "AsyncTransport",
    "Request",
    "Response",
    "StreamResponse",
    "origin",
    "same_origin",
]


@attrs.frozen
class Request:
    """One HTTP request, as the client built it.

    ``timeout`` is seconds for the exchange once a connection is in hand: connecting,
    sending and reading the answer (None: the transport's default). Waiting for a free
    pooled connection is bounded separately (``AiohttpTransport(pool_timeout=...)``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    json: object = None
    timeout: float | None = None


@attrs.frozen
class Response:
    """One complete HTTP response."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content: bytes = b""

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.content.decode("utf-8", "replace")


class StreamResponse(abc.ABC):
    """A response whose body is read in chunks (downloads)."""

    status: int
    headers: Mapping[str, str]

    @abc.abstractmethod
    def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Yield the body in chunks."""


class _BufferedStream(StreamResponse):
    def __init__(self, response: Response) -> None:
        self.status = response.status
        self.headers = response.headers
        self._content = response.content

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        for start in range(0, len(self._content), chunk_size):
            yield self._content[start : start + chunk_size]


class AsyncTransport(abc.ABC):
    """Sends one request and returns one response; knows nothing about Midjourney.

    Implementations raise `ConnectError` when the request never left, and
    `RequestTimeoutError` / `TransportError` when it may have reached the server.
    """

    @abc.abstractmethod
    async def send(self, request: Request) -> Response:
        """Send *request* and return the complete response."""

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[StreamResponse]:
        """Send *request* and yield a response whose body is read in chunks.

        The default buffers the whole body through `send`; real transports stream.
        """
        yield _BufferedStream(await self.send(request))

    async def aclose(self) -> None:
        """Release resources; the default holds none."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PORTABLE_HEADERS = frozenset({"user-agent", "accept", "accept-encoding"})
DEFAULT_POOL_TIMEOUT = 60.0
"""Seconds a request may wait for a free pooled connection before `ConnectError`."""
_CONNECT_TIMEOUT = 10.0
# Origins whose semaphores `_Pool` remembers by URL prefix (downloads may name many).
_MAX_GATES = 256
# Everything aiohttp (or the socket under it) raises for one request. Anything else
# is a bug, and propagates as it is. (Our own errors are ConnectionErrors, hence
# OSErrors: each handler lets MJError through before it catches these.)
_FAILURES = (aiohttp.ClientError, OSError, TimeoutError, ValueError)
_AIOHTTP_URL = re.compile(r",?\s*url=(?:URL\()?'[^']*'\)?")


def origin(url: str) -> tuple[str, str, int | None]:
    """The scheme, host and port of *url*, lowercased, with the scheme's default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(url: str, other: str) -> bool:
    """True when *url* and *other* share scheme, host and port (``https://h`` is ``:443``)."""
    return origin(url) == origin(other)


_ERRNO_REASONS: dict[int, ConnectReason] = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "connection timed out",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "network unreachable",
}


def _connect_reason(exc: BaseException) -> ConnectReason | None:
    """Why aiohttp could not connect, from its exception's type and OS error.

    None leaves it to `ConnectError`, which reads the message (an OS error not listed).
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connection timed out"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return None
    cause = exc.os_error
    if isinstance(cause, socket.gaierror):
        return "host name not found (DNS)"
    if isinstance(cause, TimeoutError):
        return "connection timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return _ERRNO_REASONS.get(cause.errno) if cause.errno is not None else None


def _map_failure(exc: BaseException, request: Request, url: str) -> TransportError:
    """Our exception for aiohttp's *exc*, built from text only (never chained to *exc*).

    The text is redacted: aiohttp's messages quote URLs, and a malformed answer's
    message quotes the bytes the server sent, which may echo a header.
    """
    secrets = secrets_in_headers(request.headers)
    where = f"{request.method} {display_url(url)}"
    # aiohttp appends ", url='...'" (the whole URL, query and all): `where` has it already.
    text = _AIOHTTP_URL.sub("", " ".join(str(exc).split()))
    detail = redact_text(text[:300], secrets)
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectError(
            f"{where}: could not connect ({kind}: {detail}); nothing was sent",
            reason=_connect_reason(exc),
            host=host_of(url),
        )
    if isinstance(exc, aiohttp.InvalidURL):
        msg = f"{where}: invalid URL; nothing was sent"
        return ConnectError(msg, reason="invalid URL", host=host_of(url))
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return RequestTimeoutError(f"{where}: no response in time ({kind})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return TransportError(
            f"{where}: the server sent a malformed HTTP answer (status {exc.status}: {detail})"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{where}: the server closed the connection without an answer")
    return TransportError(f"{where}: connection failed ({kind}: {detail})")


class _Lease:
    """One request's place in the pool: a per-host slot and, under it, a total slot."""

    def __init__(self, *semaphores: anyio.Semaphore) -> None:
        self._semaphores = semaphores
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            for semaphore in reversed(self._semaphores):
                semaphore.release()


class _Pool:
    """Admission to aiohttp's connection pool, so the request timeout starts in it.

    Mirrors the connector's ``limit`` and ``limit_per_host``: a request enters aiohttp
    only when a connection is free for it, so aiohttp never queues it inside its own
    timeout. The wait here is first come, first served, and bounded by *timeout*.
    """

    def __init__(self, limit: int, limit_per_host: int, timeout: float | None) -> None:
        self._total = anyio.Semaphore(limit) if limit > 0 else None
        self._limit_per_host = limit_per_host
        self._per_host: dict[tuple[str, str, int | None], anyio.Semaphore] = {}
        # The semaphores of each "scheme://host:port" prefix seen, so the URL is not
        # parsed again for every request to the same server.
        self._gates: dict[str, tuple[anyio.Semaphore, ...]] = {}
        self.timeout = timeout

    def _semaphores(self, url: str) -> tuple[anyio.Semaphore, ...]:
        """Per host first, then the total (a request waiting for a busy host holds no
        total slot that a request for another host could use)."""
        start = url.find("//")
        end = url.find("/", start + 2) if start >= 0 else -1
        prefix = url if end < 0 else url[:end]
        gates = self._gates.get(prefix) if start >= 0 else None
        if gates is None:
            found: list[anyio.Semaphore] = []
            if self._limit_per_host > 0:
                key = origin(url)
                host = self._per_host.get(key)
                if host is None:
                    host = self._per_host[key] = anyio.Semaphore(self._limit_per_host)
                found.append(host)
            if self._total is not None:
                found.append(self._total)
            gates = tuple(found)
            if start >= 0 and len(self._gates) < _MAX_GATES:
                self._gates[prefix] = gates
        return gates

    async def acquire(self, request: Request, url: str) -> _Lease:
        semaphores = self._semaphores(url)
        # The usual case, a free connection and nobody queued before this request: take
        # it without waiting (no cancel scope, no pass through the event loop). Taking
        # it only when nobody waits keeps the wait first come, first served.
        if all(s.value > 0 and not s.statistics().tasks_waiting for s in semaphores):
            for semaphore in semaphores:
                semaphore.acquire_nowait()
            return _Lease(*semaphores)
        acquired: list[anyio.Semaphore] = []
        try:
            with anyio.move_on_after(self.timeout) as scope:
                for semaphore in semaphores:
                    await semaphore.acquire()
                    acquired.append(semaphore)
        except BaseException:
            _Lease(*acquired).release()
            raise
        if scope.cancelled_caught:
            _Lease(*acquired).release()
            where = f"{request.method} {display_url(url)}"
            msg = (
                f"{where}: no free connection within {self.timeout:g}s (pool_timeout); "
                "nothing was sent"
            )
            raise ConnectError(msg, reason="no free connection", host=host_of(url))
        return _Lease(*acquired)


class _AiohttpStream(StreamResponse):
    def __init__(self, response: aiohttp.ClientResponse, request: Request, url: str) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self._response = response
        self._request = request
        self._url = url

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        chunks = self._response.content.iter_chunked(chunk_size)
        while True:
            failure: TransportError | None = None
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except MJError:
                raise
            except _FAILURES as exc:
                failure = _map_failure(exc, self._request, self._url)
            # Raised out here, after the except block, so aiohttp's exception is
            # neither our __cause__ nor our __context__.
            if failure is not None:
                raise failure
            yield chunk


class AiohttpTransport(AsyncTransport):
    """The default transport: one aiohttp `ClientSession`.

    Args:
        session: a caller-owned session, which this transport then never closes. Its
            connector's ``limit`` / ``limit_per_host`` size the pool admission.
        timeout: default seconds per request, counted from the moment a pooled
            connection is free for it (connecting, sending, reading).
        limit: total connections in the pool; status polls are batched, so the pool
            serves submits and downloads, not one connection per waiter.
        limit_per_host: connections per host.
        pool_timeout: seconds a request may wait for a free connection (None: no
            bound). Running out raises `ConnectError`: nothing was sent, so even a
            submit is retried. Requests wait their turn in the order they came.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        limit: int = 100,
        limit_per_host: int = 64,
        pool_timeout: float | None = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        if pool_timeout is not None and not pool_timeout > 0:
            msg = f"pool_timeout must be > 0 seconds or None, got {pool_timeout!r}"
            raise ValueError(msg)
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._limit = limit
        self._limit_per_host = limit_per_host
        if session is not None and session.connector is not None:
            limit, limit_per_host = session.connector.limit, session.connector.limit_per_host
        self._pool = _Pool(limit, limit_per_host, pool_timeout)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @property
    def pool_timeout(self) -> float | None:
        """Seconds a request may wait for a free pooled connection (None: unbounded)."""
        return self._pool.timeout

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                family=socket.AF_UNSPEC,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _timeout_for(self, request: Request) -> aiohttp.ClientTimeout:
        total = request.timeout if request.timeout is not None else self._timeout
        timeout = self._timeouts.get(total)
        if timeout is None:
            # connect is bounded separately so "never reached" is reported as ConnectError.
            timeout = aiohttp.ClientTimeout(total=total, connect=min(total, _CONNECT_TIMEOUT))
            if len(self._timeouts) < _MAX_GATES:
                self._timeouts[total] = timeout
        return timeout

    async def _open(self, request: Request) -> tuple[aiohttp.ClientResponse, _Lease, str]:
        """Send *request*, following a GET's redirects by hand; returns the final hop.

        aiohttp strips only ``Authorization`` when a redirect leaves the origin; a key in
        ``mj-api-secret`` or a caller's header would follow a CDN redirect. So redirects
        are followed here, and a hop to another origin keeps only the harmless headers.
        Submits never follow redirects: resending a POST elsewhere could pay twice.
        Each hop holds its own place in the pool until its response is released.
        """
        session = self._ensure_session()
        url = request.url
        headers = dict(request.headers)
        timeout = self._timeout_for(request)
        for _ in range(_MAX_REDIRECTS + 1):
            lease = await self._pool.acquire(request, url)
            try:
                response = await session.request(
                    request.method,
                    url,
                    headers=headers,
                    json=request.json if request.method != "GET" else None,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except BaseException:
                lease.release()
                raise
            location = response.headers.get("Location")
            if request.method != "GET" or response.status not in _REDIRECT_STATUSES or not location:
                return response, lease, url
            response.release()
            lease.release()
            target = urljoin(str(response.url), location)
            if not same_origin(target, url):
                headers = {k: v for k, v in headers.items() if k.lower() in _PORTABLE_HEADERS}
            url = target
        msg = f"more than {_MAX_REDIRECTS} redirects from {display_url(request.url)}"
        raise TransportError(msg)

    async def _send(self, request: Request) -> Response:
        response, lease, _ = await self._open(request)
        try:
            content = await response.read()
        finally:
            response.release()
            lease.release()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Response(status=response.status, headers=headers, content=content)

    async def send(self, request: Request) -> Response:
        """Send *request* through the session and read the whole body."""
        failure: TransportError | None = None
        try:
            return await self._send(request)
        except MJError:
            raise  # ours already (no free connection, too many redirects)
        except _FAILURES as exc:
            failure = _map_failure(exc, request, request.url)
        # Raised out here, after the except block, so aiohttp's exception is neither
        # our __cause__ nor our __context__.
        raise failure

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[StreamResponse]:
        """Send *request* and stream the body without buffering it."""
        failure: TransportError | None = None
        try:
            response, lease, url = await self._open(request)
        except MJError:
            raise
        except _FAILURES as exc:
            failure = _map_failure(exc, request, request.url)
        if failure is not None:
            raise failure
        try:
            yield _AiohttpStream(response, request, url)
        finally:
            response.release()
            lease.release()

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()
