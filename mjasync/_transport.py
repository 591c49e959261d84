"""The transport seam: mjasync's own Request/Response, and the one aiohttp user.

Everything above this module speaks `Request` and `Response`; aiohttp types never leak
into a public signature. `AiohttpTransport` maps aiohttp's failures onto the error tree,
keeping the one distinction the retry policy depends on: `ConnectError` means the
request provably never reached the server, any other `TransportError` means it may have.
"""

from __future__ import annotations

import abc
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import aiohttp
import attrs

from ._errors import ConnectError, RequestTimeoutError, TransportError

__all__ = [
    "AiohttpTransport",
    "AsyncTransport",
    "Request",
    "Response",
    "StreamResponse",
]


@attrs.frozen
class Request:
    """One HTTP request, as the client built it.

    ``timeout`` is seconds for the whole exchange (None: the transport's default).
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
_PORTABLE_HEADERS = frozenset({"user-agent", "accept", "accept-encoding"})


def _origin(url: str) -> tuple[str, str]:
    parsed = urlsplit(url)
    return (parsed.scheme.lower(), parsed.netloc.lower())


class _AiohttpStream(StreamResponse):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self._response = response

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_chunked(chunk_size):
                yield chunk


@contextlib.contextmanager
def _mapped_errors() -> Any:
    # Most specific first: a connect failure means nothing was sent.
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise ConnectError(f"could not connect: {exc}") from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise RequestTimeoutError("no response in time") from exc
    except aiohttp.InvalidURL as exc:
        raise ConnectError(f"invalid URL: {exc}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise TransportError(f"connection failed: {type(exc).__name__}: {exc}") from exc


class AiohttpTransport(AsyncTransport):
    """The default transport: one aiohttp `ClientSession`.

    Args:
        session: a caller-owned session, which this transport then never closes.
        timeout: default seconds per request.
        limit: total connections in the pool; status polls are batched, so the pool
            serves submits and downloads, not one connection per waiter.
        limit_per_host: connections per host.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        limit: int = 100,
        limit_per_host: int = 64,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._limit = limit
        self._limit_per_host = limit_per_host

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
        # connect is bounded separately so "never reached" is reported as ConnectError.
        return aiohttp.ClientTimeout(total=total, connect=min(total, 10.0))

    async def _open(self, request: Request) -> aiohttp.ClientResponse:
        """Send *request*, following a GET's redirects by hand.

        aiohttp strips only ``Authorization`` when a redirect leaves the origin; a key in
        ``mj-api-secret`` or a caller's header would follow a CDN redirect. So redirects
        are followed here, and a hop to another origin keeps only the harmless headers.
        Submits never follow redirects: resending a POST elsewhere could pay twice.
        """
        session = self._ensure_session()
        url = request.url
        headers = dict(request.headers)
        timeout = self._timeout_for(request)
        for _ in range(_MAX_REDIRECTS + 1):
            response = await session.request(
                request.method,
                url,
                headers=headers,
                json=request.json if request.method != "GET" else None,
                timeout=timeout,
                allow_redirects=False,
            )
            location = response.headers.get("Location")
            if request.method != "GET" or response.status not in _REDIRECT_STATUSES or not location:
                return response
            response.release()
            target = urljoin(str(response.url), location)
            if _origin(target) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() in _PORTABLE_HEADERS}
            url = target
        msg = f"more than {_MAX_REDIRECTS} redirects from {request.url.split('?')[0]}"
        raise TransportError(msg)

    async def send(self, request: Request) -> Response:
        """Send *request* through the session and read the whole body."""
        with _mapped_errors():
            response = await self._open(request)
            try:
                content = await response.read()
            finally:
                response.release()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Response(status=response.status, headers=headers, content=content)

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[StreamResponse]:
        """Send *request* and stream the body without buffering it."""
        with _mapped_errors():
            response = await self._open(request)
        try:
            yield _AiohttpStream(response)
        finally:
            response.release()

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()
