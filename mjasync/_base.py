"""The base of `Client`: configuration, environment, headers, URLs, lifecycle, requests.

`BaseClient` reads the arguments (and ``MJ_BASE_URL``, ``MJ_API_KEY``, ``MJ_AUTH``),
builds the headers and every URL, owns the transport, and sends every request through
`_request`: retried by `RetryPolicy`, paced by the `SubmitGate` for submits, with the key
redacted from whatever comes back. The route coroutines live in the mixins `Client` is
made of (`_submits`, `_actions`, `_queries`, `_notify`); none talks to the transport itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Self, TypeVar, cast, get_args
from urllib.parse import urlsplit

import anyio

from . import __about__
from ._admission import SubmitGate, admit_again
from ._batch import BatchFetcher
from ._bus import NotificationBus
from ._clock import Clock
from ._detect import Evidence
from ._download import DEFAULT_MAX_DOWNLOAD_BYTES
from ._errors import (
    AuthenticationError,
    ClientClosedError,
    InvalidRequestError,
    MJError,
    QueueFullError,
    RateLimitError,
)
from ._images import DEFAULT_MAX_IMAGE_BYTES, ImageInputs
from ._models import Submission
from ._policy import PollPolicy, RetryPolicy
from ._poll import Poller
from ._redact import display_url, logged_answer, logged_body, redact_error, secrets_in_headers
from ._responses import explain_auth, read_body, submission_or_raise
from ._retry import RequestKind, with_retries
from ._transport import DEFAULT_POOL_TIMEOUT, AiohttpTransport, AsyncTransport, Request, Response
from ._webhook import HookSettings

__all__ = ["AuthStyle", "BaseClient", "Mode"]

logger = logging.getLogger("mjasync")

AuthStyle = Literal["bearer", "authorization", "mj-api-secret"]
"""Where the key goes: "Bearer KEY" or raw KEY in Authorization, or the mj-api-secret header."""
Mode = Literal["fast", "relax", "turbo"]
"""A speed mode: every request goes under ``/mj-<mode>/mj/...``."""
_AUTH_STYLES: tuple[str, ...] = get_args(AuthStyle)
_MODES = {mode: f"/mj-{mode}" for mode in get_args(Mode)}
_T = TypeVar("_T")


def _auth_sent(headers: Mapping[str, str]) -> str | None:
    """The auth style the final headers carry (a key in ``headers=`` counts), or None."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if authorization:
        return "bearer" if authorization.lower().startswith("bearer ") else "authorization"
    if lowered.get("mj-api-secret"):
        return "mj-api-secret"
    return None


def _normalise_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    if url.endswith("/mj"):
        url = url[: -len("/mj")]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        msg = f"base_url must be an http(s) URL such as https://host, got {base_url!r}"
        raise InvalidRequestError(msg)
    return url


def _mode_prefix(mode: str | None) -> str:
    if mode is None or mode == "":
        return ""
    if mode.lower() in _MODES:
        return _MODES[mode.lower()]
    if mode.startswith("/") and re.fullmatch(r"/[\w.-]+", mode):
        return mode  # a free-form relay prefix such as "/mj-fast-relay"
    msg = f'mode must be "fast", "relax", "turbo", a "/prefix" or None, got {mode!r}'
    raise InvalidRequestError(msg)


def _compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset options: a sent null can change what the proxy does."""
    return {key: value for key, value in body.items() if value is not None}


class BaseClient:
    """Configuration, lifecycle and the one way requests go out; see `Client`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        auth: AuthStyle | None = None,
        mode: str | None = None,
        timeout: float = 30.0,
        pool_timeout: float | None = DEFAULT_POOL_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        notify_hook: str | None = None,
        notify_token: str | None = None,
        trust_notifications: bool = False,
        notify_bus: NotificationBus | None = None,
        headers: Mapping[str, str] | None = None,
        session: Any = None,
        transport: AsyncTransport | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        image_seed_timeout: float = 65.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        queue_full_wait: float = 120.0,
        clock: Clock | None = None,
    ) -> None:
        base = base_url if base_url is not None else os.environ.get("MJ_BASE_URL")
        if not base:
            msg = "no base_url given and MJ_BASE_URL is not set"
            raise InvalidRequestError(msg)
        self._base_url = _normalise_base_url(base)
        key = api_key if api_key is not None else os.environ.get("MJ_API_KEY")
        style = auth if auth is not None else os.environ.get("MJ_AUTH", "bearer")
        if style not in _AUTH_STYLES:
            msg = f"auth must be one of {', '.join(_AUTH_STYLES)}, got {style!r}"
            raise InvalidRequestError(msg)
        self._auth: str = style
        if timeout <= 0 or image_seed_timeout <= 0:
            msg = "timeout and image_seed_timeout must be > 0 seconds"
            raise InvalidRequestError(msg)
        if pool_timeout is not None and not pool_timeout > 0:
            msg = f"pool_timeout must be > 0 seconds or None, got {pool_timeout!r}"
            raise InvalidRequestError(msg)
        self._prefix = _mode_prefix(mode)
        root = self._url("")
        self._display_root = display_url(root) if "?" not in root and "#" not in root else None
        self._mode = mode
        self._timeout = timeout
        self._image_seed_timeout = image_seed_timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._poll = poll if poll is not None else PollPolicy()
        self._max_image_bytes = max_image_bytes
        if max_download_bytes <= 0:
            msg = f"max_download_bytes must be > 0, got {max_download_bytes!r}"
            raise InvalidRequestError(msg)
        self._max_download_bytes = max_download_bytes
        if not queue_full_wait >= 0:
            msg = f"queue_full_wait must be >= 0 seconds, got {queue_full_wait!r}"
            raise InvalidRequestError(msg)
        self._queue_full_wait = float(queue_full_wait)
        self._headers = self._build_headers(key, headers)
        self._auth_sent = _auth_sent(self._headers)
        # Everything a server might echo back that must never reach a message or log.
        self._secrets = secrets_in_headers(self._headers) + ((key,) if key else ())
        self._hooks = HookSettings(
            notify_hook,
            notify_token or os.environ.get("MJ_NOTIFY_TOKEN"),
            trust=trust_notifications,
        )
        if notify_bus is not None and not isinstance(cast(object, notify_bus), NotificationBus):
            msg = f"notify_bus must be a NotificationBus, got {type(notify_bus).__name__}"
            raise InvalidRequestError(msg)
        self._bus = notify_bus
        self._bus_started = False
        self._bus_tasks: set[asyncio.Task[Any]] = set()
        self._token_warned = False
        if transport is not None and session is not None:
            msg = "pass either transport= or session=, not both"
            raise InvalidRequestError(msg)
        self._transport: AsyncTransport = transport or AiohttpTransport(
            session=session, timeout=timeout, pool_timeout=pool_timeout
        )
        self._rng = random.Random()
        self._gate = SubmitGate(
            base=self._retry.backoff, cap=self._retry.max_backoff, rng=self._rng
        )
        self._server = Evidence()
        self._probed = False
        self._notify_warned = False
        self._closed = False
        self._clock = clock
        self._fetcher = BatchFetcher(self._request, self._where, self._server)
        self._images = ImageInputs(
            self._transport,
            user_agent=self._headers["User-Agent"],
            retry=self._retry,
            rng=self._rng,
            max_bytes=max_image_bytes,
            check_open=self._check_open,
        )
        self._requests_sent = 0
        self._close_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._poller: Poller | None = None
        # Routes whose server refused image URLs: their URLs are downloaded up front.
        self._base64_routes: set[str] = set()

    # -- configuration ---------------------------------------------------------------

    def _build_headers(self, key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "User-Agent": f"mjasync/{__about__.__version__}",
            "Accept": "application/json",
        }
        if key:
            if self._auth == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            elif self._auth == "authorization":
                headers["Authorization"] = key
            else:
                headers["mj-api-secret"] = key
        headers.update(extra or {})
        return headers

    @property
    def base_url(self) -> str:
        """The server's base URL, without the ``/mj`` path."""
        return self._base_url

    @property
    def notify_hook(self) -> str | None:
        """The hook URL sent with every submit (it carries the token: keep it private)."""
        return self._hooks.url

    @property
    def notify_token(self) -> str:
        """The secret a notification must carry to be accepted."""
        return self._hooks.token

    @property
    def trust_notifications(self) -> bool:
        """Whether a final notification resolves waiters without a confirming fetch."""
        return self._hooks.trust

    @trust_notifications.setter
    def trust_notifications(self, trust: bool) -> None:
        self._hooks.trust = trust

    @property
    def retry(self) -> RetryPolicy:
        """How failed requests are retried (read-only: pass ``retry=`` to `Client`)."""
        return self._retry

    @property
    def poll(self) -> PollPolicy:
        """How the poller paces status requests (read-only: pass ``poll=`` to `Client`)."""
        return self._poll

    @property
    def max_image_bytes(self) -> int:
        """The largest image accepted as an input, in bytes."""
        return self._max_image_bytes

    @property
    def max_download_bytes(self) -> int:
        """The largest file `Client.download` saves unless told otherwise, in bytes."""
        return self._max_download_bytes

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has sent, retries included."""
        return self._requests_sent

    @property
    def closed(self) -> bool:
        """True once `aclose` ran."""
        return self._closed

    @property
    def submit_gate(self) -> SubmitGate:
        """The pause all submits of this client honour after queue-full or 429 answers.

        Code that sends submits with its own retry loop (with ``queue_full_wait=0``)
        shares it: ``await gate.wait()`` before each try, ``gate.push_back(retry_after)``
        after a refusal, ``gate.ok()`` after an accepted submit.
        """
        return self._gate

    @property
    def queue_full_wait(self) -> float:
        """Seconds one submit may wait through queue-full and 429 answers (see `Client`)."""
        return self._queue_full_wait

    def __repr__(self) -> str:
        mode = f", mode={self._mode!r}" if self._mode else ""
        return f"Client(base_url={self._base_url!r}, auth={self._auth!r}{mode})"

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    def _check_open(self) -> None:
        """Raise `ClientClosedError` once `aclose` ran: the one closed check."""
        if self._closed:
            msg = "this Client is closed; create a new one"
            raise ClientClosedError(msg)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run *callback* first thing in `aclose` (the poller stops before the transport)."""
        self._close_callbacks.append(callback)

    async def aclose(self) -> None:
        """Stop the poller, end every waiter with `ClientClosedError`, close the session.

        Every step runs even when the task closing the client is being cancelled (Ctrl-C,
        a web app shutting down mid-request): the session and its connections are always
        released, and the cancellation is raised again afterwards.
        """
        if self._closed:
            return
        self._closed = True
        steps = [*reversed(self._close_callbacks), self._transport.aclose]
        self._close_callbacks.clear()
        cancelled: BaseException | None = None
        failure: Exception | None = None
        with anyio.CancelScope(shield=True):
            for step in steps:
                try:
                    await step()
                except anyio.get_cancelled_exc_class() as exc:
                    # A native task.cancel() gets through anyio's shield; the next step
                    # (the session) must still run, or aiohttp warns of an unclosed session.
                    cancelled = cancelled or exc
                except Exception as exc:
                    failure = failure or exc
        if cancelled is not None:
            raise cancelled
        if failure is not None:
            raise failure

    # -- sending ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._base_url}{self._prefix}/mj{path}"

    def _where(self, method: str, path: str) -> str:
        """``"METHOD URL"`` for messages: the whole URL, without credentials or query."""
        root = self._display_root
        if root is None or "?" in path or "#" in path:
            return f"{method} {display_url(self._url(path))}"
        # Every request builds one (most never fail): the root is shown once, the
        # path appended as display_url would leave it.
        return f"{method} {root}{path}"

    async def _request(
        self,
        method: str,
        path: str,
        parse: Callable[[Response], _T],
        *,
        json: object = None,
        kind: RequestKind = RequestKind.QUERY,
        timeout: float | None = None,
        gated: bool = False,
        record: bool = True,
    ) -> _T:
        """Send with retries; *parse* runs inside the loop so a refusal in the body retries too.

        Every failure leaves here with the key redacted from whatever the server echoed,
        and an `AuthenticationError` says how the key was sent and what else to try.
        A *gated* request (a submit) waits on the `submit_gate` and is resent through
        queue-full and 429 answers for up to ``queue_full_wait`` seconds.
        """
        self._check_open()
        request = Request(method, self._url(path), self._headers, json, timeout)
        where = self._where(method, path)
        # Inside SubmitGate.bypass the caller paces itself: no waiting, no resending.
        bypassed = gated and self._gate.bypassed
        gated = gated and not bypassed
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            logger.debug("%s: sending%s", where, logged_body(json, self._secrets))

        async def attempt() -> _T | _NotNow:
            self._requests_sent += 1
            started = time.perf_counter()
            try:
                response = await self._transport.send(request)
            except MJError as error:
                if debug:
                    logger.debug(
                        "%s: %s after %.3fs",
                        where,
                        type(error).__name__,
                        time.perf_counter() - started,
                    )
                raise
            if debug:
                logger.debug(
                    "%s: HTTP %d in %.3fs (%d bytes)%s",
                    where,
                    response.status,
                    time.perf_counter() - started,
                    len(response.content),
                    logged_answer(response.content, self._secrets),
                )
            try:
                return parse(response)
            except AuthenticationError as error:
                explain_auth(error, where=where, auth_style=self._auth_sent)
                raise
            except (QueueFullError, RateLimitError) as error:
                if gated or bypassed:
                    # A value, not an exception: with_retries must not spend its quick
                    # retries on it; the admission loop below waits instead.
                    return _NotNow(error)
                raise

        started = anyio.current_time() if gated else 0.0
        try:
            while True:
                if gated and self._queue_full_wait > 0:
                    left = self._queue_full_wait - (anyio.current_time() - started)
                    await self._gate.wait(limit=left)
                result = await with_retries(self._retry, kind, self._rng, attempt, what=where)
                if not isinstance(result, _NotNow):
                    if gated or bypassed:
                        self._gate.ok()
                    if record:
                        self._server.record(path, None)
                    return result
                if bypassed:
                    # Raised at once, but the client's other submits still pause.
                    error = result.error
                    self._gate.push_back(
                        error.retry_after if isinstance(error, RateLimitError) else None
                    )
                    raise error
                admit_again(
                    self._gate,
                    result.error,
                    started=started,
                    budget=self._queue_full_wait,
                    max_retry_after=self._retry.max_retry_after,
                    where=where,
                )
        except MJError as error:
            redact_error(error, self._secrets)
            if record:
                self._server.record(path, error)
            raise

    async def _submit(
        self, path: str, body: Mapping[str, Any], *, task_id: str | None = None
    ) -> Submission:
        """POST a submit; *task_id* names the task it acts on, for not-found answers."""
        where = self._where("POST", path)

        def parse(response: Response) -> Submission:
            return submission_or_raise(
                read_body(response, where, task_id=task_id),
                where,
                response.status,
                task_id=task_id,
            )

        return await self._request(
            "POST", path, parse, json=_compact(body), kind=RequestKind.SUBMIT, gated=True
        )


class _NotNow:
    """A queue-full or 429 answer to a gated submit, carried out of `with_retries`."""

    __slots__ = ("error",)

    def __init__(self, error: QueueFullError | RateLimitError) -> None:
        self.error = error
