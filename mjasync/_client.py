"""Client: configuration, lifecycle, and one short coroutine per proxy route."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import os
import random
import re
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, cast, overload
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import attrs

from . import __about__, _chains
from ._admission import SubmitGate
from ._bus import NotificationBus
from ._detect import NOTIFY_SILENCE_TASKS, Evidence, ServerInfo, classify_probe, route_key
from ._download import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MediaKind,
    default_kind,
    download_result,
    media_url,
    same_origin,
)
from ._errors import (
    APIError,
    AuthenticationError,
    ButtonNotFoundError,
    ClientClosedError,
    DecodeError,
    Delivery,
    InvalidRequestError,
    MJError,
    QueueFullError,
    RateLimitError,
    RouteNotFoundError,
    ServerError,
    SubmitRejectedError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    body_preview,
    delivery_of,
)
from ._images import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageInput,
    check_url,
    fetch_image,
    is_url,
    to_data_uri,
)
from ._models import CHANGE_PARENT_ACTIONS, AccountFilter, Button, Submission, Task, TaskStatus
from ._poll import Poller, PollPolicy, PollStats, ProgressCallback, TaskWatch, await_waiter, outcome
from ._redact import display_url, redact_error, redact_text, secrets_in_headers
from ._responses import explain_auth, read_body, submission_or_raise
from ._retry import RequestKind, RetryPolicy, with_retries
from ._serde import decode_task, decode_tasks, encode_account_filter
from ._transport import DEFAULT_POOL_TIMEOUT, AiohttpTransport, AsyncTransport, Request, Response
from ._webhook import (
    MAX_NOTIFICATION_BYTES,
    NotificationBody,
    NotificationResult,
    aiohttp_handler,
    check_token,
    parse_notification,
)

__all__ = ["AuthStyle", "Client"]

logger = logging.getLogger("mjasync")

AuthStyle = Literal["bearer", "authorization", "mj-api-secret"]
"""Where the key goes: "Bearer KEY" or raw KEY in Authorization, or the mj-api-secret header."""
_AUTH_STYLES: tuple[str, ...] = ("bearer", "authorization", "mj-api-secret")
_MODES = {"fast": "/mj-fast", "relax": "/mj-relax", "turbo": "/mj-turbo"}
_DIMENSIONS = ("PORTRAIT", "SQUARE", "LANDSCAPE")
_BOT_TYPES = {"mj": "MID_JOURNEY", "niji": "NIJI_JOURNEY"}
_STATE_LIMIT = 255
_FALLBACK_FETCH_CONCURRENCY = 8
_ROUTE_MISSING_STATUSES = frozenset({404, 405, 501})
_MAX_TASK_ID = 128
_CHANGE_ACTIONS = ("UPSCALE", "VARIATION", "REROLL")
# Parents /submit/change accepts (novicezk SubmitController.java change()); new-api labels
# the variations it relayed from PLUS HIGH_/LOW_VARIATION, which upstream are VARIATIONs.
_CHANGE_PARENTS = CHANGE_PARENT_ACTIONS | {"HIGH_VARIATION", "LOW_VARIATION"}
# GET on POST-only routes: 405 where the route exists, 404 where it does not; a GET of
# image-seed with an id no server has answers the proxy's own not-found JSON.
_PROBES = (
    "/submit/action",
    "/submit/change",
    "/task/list-by-condition",
    "/task/list-by-ids",
    "/task/0/cancel",
    "/task/0/image-seed",
)
_LOG_BODY = 400
# How long aclose waits for the bus's pending publishes (RedisBus bounds each by its
# publish_timeout; this bounds a custom bus that does not).
_BUS_CLOSE_WAIT = 5.0
_DATA_URI = re.compile(r"^data:([\w.+/-]*);base64,", re.IGNORECASE)
_T = TypeVar("_T")

TaskRef = Task | Submission | str
"""Anything that names a task: a `Task`, a `Submission` or a task id."""


def task_id_of(target: object) -> str:
    """The task id named by a `Task`, a `Submission` or an id string.

    Surrounding whitespace is dropped. An id that could not be a task id, or that would
    change the request's path if put in a URL (``/``, ``?``, ``#``, ``\\``, inner
    whitespace, control characters, ``.`` or ``..``, more than 128 characters), raises
    `InvalidRequestError`: nothing is sent.
    """
    if isinstance(target, Task):
        return _checked_id(target.id)
    if isinstance(target, Submission):
        if target.task_id is None:
            msg = f"submission (code {target.code}) carries no task id"
            raise InvalidRequestError(msg)
        return _checked_id(target.task_id)
    if isinstance(target, str) and target.strip():
        return _checked_id(target.strip())
    if isinstance(target, int) and not isinstance(target, bool):
        return str(target)
    msg = f"expected a Task, a Submission or a task id, got {type(target).__name__}"
    raise InvalidRequestError(msg)


def _checked_id(task_id: str) -> str:
    shown = repr(task_id) if len(task_id) <= 40 else repr(task_id[:40]) + "…"
    problem = None
    if not task_id or task_id in {".", ".."}:
        problem = "is empty, or a path step"
    elif len(task_id) > _MAX_TASK_ID:
        problem = f"is {len(task_id)} characters long (at most {_MAX_TASK_ID})"
    elif any(ch in "/?#\\" for ch in task_id):
        problem = "contains /, ?, # or \\"
    elif any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in task_id):
        problem = "contains whitespace or control characters"
    if problem is not None:
        msg = f"task id {shown} {problem}: not a task id"
        raise InvalidRequestError(msg)
    return task_id


def _auth_sent(headers: Mapping[str, str]) -> str | None:
    """The auth style the final headers carry (a key in ``headers=`` counts), or None."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if authorization:
        return "bearer" if authorization.lower().startswith("bearer ") else "authorization"
    if lowered.get("mj-api-secret"):
        return "mj-api-secret"
    return None


def _task_path(task_id: str, route: str) -> str:
    """``/task/{id}/{route}`` with the id percent-encoded (it is one path segment)."""
    return f"/task/{quote(task_id, safe='')}/{route}"


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


def _require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"{what} must be a non-empty string"
        raise InvalidRequestError(msg)
    _require_utf8(value, what)
    return value


def _require_utf8(value: str, what: str) -> None:
    """Refuse text that cannot be sent as UTF-8 (lone surrogates, e.g. from bad decoding)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end]
        position = exc.start
    else:
        return
    msg = (
        f"{what} is not valid Unicode text: it contains a lone surrogate "
        f"({bad!a} at position {position}), which cannot be sent as UTF-8"
    )
    raise InvalidRequestError(msg)


def _summary(value: object) -> object:
    """*value* for a debug log: data URIs shortened to their type and size."""
    if isinstance(value, str):
        match = _DATA_URI.match(value)
        if match:
            return f"<data:{match.group(1) or '?'};base64, {len(value) - match.end():,} chars>"
        if len(value) > 200:
            return value[:200] + "…"
        return value
    if isinstance(value, Mapping):
        return {key: _summary(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_summary(item) for item in value]
    return value


class Client:
    """An asyncio client for one midjourney-proxy base URL.

    Use it as ``async with mjasync.Client(...) as mj:``; it owns one aiohttp session
    (or uses yours, which it then never closes) and one poller shared by every wait.

    Args:
        base_url: ``https://host``; a trailing ``/`` or ``/mj`` is tolerated.
            Defaults to ``$MJ_BASE_URL``.
        api_key: the key; defaults to ``$MJ_API_KEY``. Never printed, logged or put
            in an exception.
        auth: ``"bearer"`` (``Authorization: Bearer KEY``, aggregators),
            ``"authorization"`` (``Authorization: KEY``, trueai) or ``"mj-api-secret"``
            (novicezk's proxies). Defaults to ``$MJ_AUTH`` or ``"bearer"``.
        mode: ``"fast"``, ``"relax"`` or ``"turbo"`` send every request under
            ``/mj-<mode>/mj/...``.
        timeout: seconds per HTTP request, counted once a pooled connection is free for
            it (connecting, sending, reading the answer).
        pool_timeout: seconds a request may wait for a free connection of the pool
            before `ConnectError` (None: no bound). Nothing was sent then, so even a
            submit is retried. Used by the default transport (not with ``transport=``).
        retry: which transient failures are retried and how long to back off.
        poll: how the shared poller batches and paces status requests.
        notify_hook: the public URL of your webhook route; every submit then carries
            ``<url>?token=<secret>`` so `handle_notification` can wake waiters early.
        notify_token: the secret for that URL; defaults to ``$MJ_NOTIFY_TOKEN``, else
            32 random bytes (url-safe). Every process that serves the webhook route
            must share it: a callback for a task submitted by another process carries
            that process's token.
        notify_bus: a `NotificationBus` (``mjasync.RedisBus(url)``) shared by every
            process of the app: each notification this client accepts is published
            once, and the ones other processes accepted wake this client's waiters the
            same way (a confirming fetch unless ``trust_notifications``). Started by
            ``async with`` (or the first wait) and closed by `aclose`; polling still
            finishes every wait when the bus is down.
        trust_notifications: resolve waiters from a terminal notification without
            confirming it with one fetch.
        headers: extra headers for every request.
        session: an aiohttp ``ClientSession`` you own.
        transport: any `AsyncTransport` (``mjasync.testing.MockTransport`` in tests).
        max_image_bytes: the largest image accepted as input.
        max_download_bytes: the largest image `download` accepts (default 50 MB).
        image_seed_timeout: seconds for `image_seed`, which a proxy may hold ~60 s.
        queue_full_wait: seconds one submit may spend waiting while the server says
            "not now" (queue full, 429): every submit of this client then pauses, with a
            backoff that doubles per round of refusals (from ``retry.backoff`` up to
            ``retry.max_backoff``, jitter, any ``Retry-After`` honoured), and the refused
            submit is sent again; a refused submit created nothing, so nothing is paid
            twice. When the time is up, the `QueueFullError` or `RateLimitError` is
            raised; 0 raises the first refusal at once. See `submit_gate`.
    """

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
        self._mode = mode
        self._timeout = timeout
        self._image_seed_timeout = image_seed_timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.poll = poll if poll is not None else PollPolicy()
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
        if notify_hook is not None and urlsplit(notify_hook).scheme not in {"http", "https"}:
            msg = f"notify_hook must be an http(s) URL, got {notify_hook!r}"
            raise InvalidRequestError(msg)
        self._notify_token = (
            notify_token or os.environ.get("MJ_NOTIFY_TOKEN") or secrets.token_urlsafe(32)
        )
        self._notify_hook = (
            _with_token(notify_hook, self._notify_token) if notify_hook is not None else None
        )
        self.trust_notifications = trust_notifications
        if transport is not None and session is not None:
            msg = "pass either transport= or session=, not both"
            raise InvalidRequestError(msg)
        self._transport: AsyncTransport = transport or AiohttpTransport(
            session=session, timeout=timeout, pool_timeout=pool_timeout
        )
        self._rng = random.Random()
        self._gate = SubmitGate(base=self.retry.backoff, cap=self.retry.max_backoff, rng=self._rng)
        self._server = Evidence()
        self._probed = False
        self._notify_warned = False
        self._closed = False
        self._list_route: str | None = "/task/list-by-condition"
        self._requests_sent = 0
        self._close_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._poller: Poller | None = None
        self._init_bus(notify_bus)
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
        return self._notify_hook

    @property
    def notify_token(self) -> str:
        """The secret a notification must carry to be accepted."""
        return self._notify_token

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
        if self._closed:
            msg = "this Client is closed; create a new one"
            raise ClientClosedError(msg)
        await self._start_bus()
        return self

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
        return f"{method} {display_url(self._url(path))}"

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
        if self._closed:
            msg = "this Client is closed"
            raise ClientClosedError(msg)
        request = Request(method, self._url(path), self._headers, json, timeout)
        where = self._where(method, path)
        # Inside SubmitGate.bypass the caller paces itself: no waiting, no resending.
        bypassed = gated and self._gate.bypassed
        gated = gated and not bypassed
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            logger.debug("%s: sending%s", where, self._logged_body(json))

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
                    self._logged_answer(response),
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

        started = anyio.current_time()
        try:
            while True:
                if gated and self._queue_full_wait > 0:
                    left = self._queue_full_wait - (anyio.current_time() - started)
                    await self._gate.wait(limit=left)
                result = await with_retries(self.retry, kind, self._rng, attempt, what=where)
                if not isinstance(result, _NotNow):
                    if gated or bypassed:
                        self._gate.ok()
                    if record:
                        self._server_answered(path, None)
                    return result
                if bypassed:
                    # Raised at once, but the client's other submits still pause.
                    error = result.error
                    self._gate.push_back(
                        error.retry_after if isinstance(error, RateLimitError) else None
                    )
                    raise error
                self._admit_again(result.error, started, where)
        except MJError as error:
            redact_error(error, self._secrets)
            if record:
                self._server_answered(path, error)
            raise

    def _admit_again(
        self, error: QueueFullError | RateLimitError, started: float, where: str
    ) -> None:
        """After a "not now": pause every submit, or raise *error* when the wait is used up."""
        spent = anyio.current_time() - started
        left = self._queue_full_wait - spent
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if left <= 0 or (
            retry_after is not None and retry_after > min(left, self.retry.max_retry_after)
        ):
            if self._queue_full_wait > 0:
                error.add_note(
                    f'mjasync: the server said "not now" for {spent:.1f}s '
                    f"(queue_full_wait={self._queue_full_wait:g}); nothing was created, "
                    "so this submit can be sent again later"
                )
            raise error
        pause = self._gate.push_back(retry_after)
        logger.info(
            "%s: %s; pausing this client's submits %.2fs (%.0fs of %gs waited)",
            where,
            type(error).__name__,
            pause,
            spent,
            self._queue_full_wait,
        )

    def _server_answered(self, path: str, error: MJError | None) -> None:
        """Note what an answer (or the lack of a route) says about the server."""
        if error is None:
            self._server.route(path, True)
            return
        if isinstance(error, RouteNotFoundError):
            self._server.route(path, False)
            if error.status is not None and 200 <= error.status < 300:
                self._server.claim(
                    "newapi", "answered a web page with HTTP 200 for a route it lacks (new-api)"
                )
        elif isinstance(error, SubmitRejectedError | TaskNotFoundError):
            self._server.route(path, True)
        if isinstance(error, APIError) and _says_newapi(error):
            self._server.claim("newapi", "answered with new-api's own error shape or wording")

    def _logged_body(self, body: object) -> str:
        if body is None:
            return ""
        text = jsonlib.dumps(_summary(body), ensure_ascii=False, default=str)
        if len(text) > _LOG_BODY:
            text = text[:_LOG_BODY] + "…"
        return " " + redact_text(text, self._secrets)

    def _logged_answer(self, response: Response) -> str:
        if not response.content:
            return ""
        text = " ".join(response.text.split())
        if len(text) > _LOG_BODY:
            text = text[:_LOG_BODY] + "…"
        return ": " + redact_text(text, self._secrets)

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

    def _common(
        self,
        *,
        state: str | None,
        notify_hook: str | None,
        account_filter: AccountFilter | None = None,
        bot_type: str | None = None,
    ) -> dict[str, Any]:
        if state is not None and len(state) > _STATE_LIMIT:
            msg = f"state is {len(state)} characters; proxies reject more than {_STATE_LIMIT}"
            raise InvalidRequestError(msg)
        if account_filter is not None and not isinstance(
            cast(object, account_filter), AccountFilter
        ):
            msg = "account_filter must be a mjasync.AccountFilter"
            raise InvalidRequestError(msg)
        if bot_type is not None:
            bot_type = _BOT_TYPES.get(bot_type.lower(), bot_type.upper())
            if bot_type not in _BOT_TYPES.values():
                msg = f'bot_type must be "MID_JOURNEY" or "NIJI_JOURNEY", got {bot_type!r}'
                raise InvalidRequestError(msg)
        if (
            account_filter is not None
            and account_filter.channel_id is not None
            and self._server.dialect == "trueai"
        ):
            # trueai's AccountFilter (Dto/BaseSubmitDTO.cs) has no channel id: only
            # instanceId picks an account there.
            account_filter = attrs.evolve(account_filter, channel_id=None)
        return {
            "botType": bot_type,
            "accountFilter": (
                encode_account_filter(account_filter) if account_filter is not None else None
            ),
            "state": state,
            "notifyHook": notify_hook if notify_hook is not None else self._notify_hook,
        }

    async def _fetch_url(self, url: str, max_bytes: int, what: str = "image") -> bytes:
        """Download an image input that must travel as base64: streamed, capped, retried."""
        if self._closed:
            msg = "this Client is closed"
            raise ClientClosedError(msg)
        # No API key: an input URL is someone else's host.
        headers = {"User-Agent": self._headers["User-Agent"], "Accept": "image/*"}
        request = Request("GET", url, headers)

        async def attempt() -> bytes:
            return await fetch_image(self._transport, request, what, max_bytes)

        try:
            return await with_retries(
                self.retry, RequestKind.QUERY, self._rng, attempt, what="an image input download"
            )
        except (TransportError, APIError) as error:
            # Nothing was submitted: an input that cannot be fetched is a bad input.
            msg = f"could not download {what}: {error}"
            raise InvalidRequestError(msg) from error

    async def _image(self, image: object, what: str, *, png_only: bool = False) -> str:
        """*image* as a data URI; a URL is downloaded (for routes that need base64)."""
        return await to_data_uri(
            image,
            what=what,
            max_bytes=self._max_image_bytes,
            fetch_url=self._fetch_url,
            png_only=png_only,
        )

    async def _image_or_url(self, image: object, what: str) -> str:
        """*image* as a checked http(s) URL when it is one, else as a data URI."""
        if is_url(image):
            return check_url(cast(str, image), what)
        return await self._image(image, what)

    @staticmethod
    def _as_list(images: object) -> list[object]:
        if isinstance(images, str | bytes | bytearray | memoryview) or hasattr(
            images, "__fspath__"
        ):
            return [images]
        return list(cast(Iterable[object], images))

    async def _images(self, images: Iterable[ImageInput], what: str) -> list[str]:
        """Every image as a data URI (URLs downloaded)."""
        items = self._as_list(images)
        return [await self._image(image, f"{what} {i}") for i, image in enumerate(items, 1)]

    async def _inputs(self, images: Iterable[ImageInput], what: str) -> list[str]:
        """Every image as a URL (when it is one) or a data URI; nothing is downloaded."""
        items = self._as_list(images)
        return [await self._image_or_url(image, f"{what} {i}") for i, image in enumerate(items, 1)]

    async def _submit_inputs(
        self,
        path: str,
        values: Sequence[str],
        whats: Sequence[str],
        build: Callable[[Sequence[str]], Mapping[str, Any]],
    ) -> Submission:
        """Submit with image URLs as URLs; where the server wants base64, download them.

        *values* are checked URLs and data URIs; *build* makes the body from them. A
        server without the URL form answers code 4 naming base64 (novicezk's describe
        "base64不能为空" and blend "base64格式错误", new-api's swap
        "sour_base64_and_target_base64_is_required"): such a validation refusal created no
        task and cost nothing, so the URLs are downloaded and the body sent once more,
        as base64. When the refused body held only URLs, this client remembers that the
        route needs base64 and downloads first from then on.
        """
        if path not in self._base64_routes and any(is_url(value) for value in values):
            try:
                return await self._submit(path, build(values))
            except APIError as error:
                if not _refuses_urls(error):
                    raise
                if all(is_url(value) for value in values):
                    self._base64_routes.add(path)
                logger.info("%s refused image URLs (%s); sending base64", path, error.description)
        encoded = [
            await self._image(value, what) if is_url(value) else value
            for value, what in zip(values, whats, strict=True)
        ]
        return await self._submit(path, build(encoded))

    # -- submits ---------------------------------------------------------------------

    async def imagine(
        self,
        prompt: str,
        *,
        images: Sequence[ImageInput] = (),
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/imagine``: a prompt (with its parameters) and optional reference images.

        Image URLs in *images* go where Midjourney reads them, at the start of the prompt
        (``"<url1> <url2> prompt --params"``): nothing is downloaded, and it works where
        a server forbids base64 uploads (trueai's "禁止上传"). Bytes, paths and data URIs
        go in ``base64Array`` (the proxy uploads them and adds their links to the prompt).

        Raises:
            mjasync.InvalidRequestError: empty prompt or a bad image, before sending.
            mjasync.BannedPromptError: code 24.
            mjasync.QueueFullError: the queue stayed full through every retry.
        """
        _require_text(prompt, "prompt")
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        values = await self._inputs(images, "reference image") if images else []
        urls = [value for value in values if is_url(value)]
        encoded = [value for value in values if not is_url(value)] or None
        text = " ".join([*urls, prompt.lstrip()]) if urls else prompt
        return await self._submit(
            "/submit/imagine", {"prompt": text, "base64Array": encoded, **common}
        )

    async def blend(
        self,
        images: Sequence[ImageInput],
        *,
        dimensions: str | None = None,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/blend`` of 2 to 5 images; *dimensions* is PORTRAIT, SQUARE or LANDSCAPE.

        Image URLs are sent as URLs in ``base64Array`` (trueai takes them); novicezk's
        proxy takes only data URIs and refuses with code 4 "base64格式错误", a refusal that
        creates no task: the URLs are then downloaded (streamed, within
        ``max_image_bytes``) and the blend sent again as base64, and this client sends
        base64 to that route from then on.
        """
        if isinstance(images, str | bytes) or not 2 <= len(images) <= 5:
            count = 1 if isinstance(images, str | bytes) else len(images)
            msg = f"blend takes 2 to 5 images, got {count}"
            raise InvalidRequestError(msg)
        if dimensions is not None and dimensions.upper() not in _DIMENSIONS:
            msg = f"dimensions must be one of {', '.join(_DIMENSIONS)}, got {dimensions!r}"
            raise InvalidRequestError(msg)
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        items = self._as_list(images)
        whats = [f"blend image {i}" for i in range(1, len(items) + 1)]
        values = [await self._image_or_url(i, w) for i, w in zip(items, whats, strict=True)]
        size = dimensions.upper() if dimensions else None
        return await self._submit_inputs(
            "/submit/blend",
            values,
            whats,
            lambda sent: {"base64Array": list(sent), "dimensions": size, **common},
        )

    async def describe(
        self,
        image: ImageInput,
        *,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/describe``: the finished task's ``final_prompt`` holds four prompts.

        An image URL is sent as trueai's ``link`` (``Dto/SubmitDescribeDTO.cs``), which
        works even where base64 uploads are forbidden; it is not also put in ``base64``,
        because trueai checks that field first and refuses it when uploads are off.
        novicezk's proxy has no ``link`` and answers code 4 "base64不能为空" without creating
        a task: the image is then downloaded (streamed, within ``max_image_bytes``) and
        sent as a data URI in ``base64``, and this client does so up front from then on.
        Bytes, paths and data URIs always go in ``base64``.
        """
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        value = await self._image_or_url(image, "describe image")

        def body(sent: Sequence[str]) -> dict[str, Any]:
            field = "link" if is_url(sent[0]) else "base64"
            return {field: sent[0], **common}

        return await self._submit_inputs("/submit/describe", [value], ["describe image"], body)

    async def shorten(
        self,
        prompt: str,
        *,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/shorten``: the finished task's ``final_prompt`` holds the analysis."""
        _require_text(prompt, "prompt")
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        return await self._submit("/submit/shorten", {"prompt": prompt, **common})

    async def action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        account_filter: AccountFilter | None = None,
        choose_same_channel: bool | None = None,
        enable_remix: bool | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Press a button of a finished task (``/submit/action``, or ``/submit/change``).

        *button* is a `Button`, a customId, or, when *task* is a `Task`, any key
        `Task.button` accepts (``"U1"``, ``"vary_region"``, a label or an emoji).
        A button that opens a modal answers code 21: the `Submission` names the MODAL
        task; finish it with `modal` (or use `run_action` with ``prompt=``).

        On novicezk's open-source proxy, which has no ``/submit/action`` and sends no
        buttons, the buttons a finished grid implies (`Button.implied`: U1-U4, V1-V4,
        reroll) are pressed through ``/submit/change``. A U, V or reroll button is also
        pressed there when the server answers that it has no ``/submit/action`` (that
        answer proves nothing was created, so the press is still sent only once); the
        client then remembers it and goes to ``/submit/change`` directly.

        Raises:
            mjasync.ButtonNotFoundError: the task has no such button, or it ended in
                FAILURE or CANCEL (nothing is sent).
            mjasync.TaskNotFoundError: the server does not know the parent task
                (``.task_id`` is its id; ``.code`` as sent: 3, or new-api's 4).
            mjasync.RouteNotFoundError: the server has no ``/submit/action`` and the
                button is not one ``/submit/change`` can press.
        """
        task_id = task_id_of(task)
        pressed = self._pressable(task, button)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        change = _change_of(pressed)
        if change is not None and (
            pressed.implied or self._server.routes.get("action_route") is False
        ):
            return await self._send_change(task_id, *change, common)
        body = {
            "taskId": task_id,
            "customId": pressed.custom_id,
            "chooseSameChannel": choose_same_channel,
            "enableRemix": enable_remix,
            **common,
        }
        try:
            return await self._submit("/submit/action", body, task_id=task_id)
        except APIError as error:
            # Only a missing route may fall back: it proves nothing was created. Any
            # other failure may hide a started job, and a second route would pay twice.
            if (
                change is None
                or not _route_missing(error)
                or delivery_of(error) is not Delivery.REJECTED
            ):
                raise
            self._server.route("/submit/action", False)
            logger.info(
                "%s has no /submit/action; pressing %s through /submit/change",
                self._base_url,
                pressed.name,
            )
        return await self._send_change(task_id, *change, common)

    def _pressable(self, task: Task | str, button: Button | str) -> Button:
        """The `Button` *button* names on *task*, checked before anything is sent."""
        if isinstance(task, Task) and task.status in {TaskStatus.FAILURE, TaskStatus.CANCEL}:
            key = button.describe() if isinstance(button, Button) else str(button)
            msg = f"task {task.id} ended in {task.status}: it has no buttons to press"
            raise ButtonNotFoundError(msg, key=key)
        if isinstance(button, Button):
            if not button.custom_id and not button.implied:
                msg = "this Button has no customId to press"
                raise InvalidRequestError(msg)
            return button
        key = _require_text(button, "button")
        if key.startswith("MJ::"):
            # An explicit customId is sent as given, even when the snapshot lacks it
            # (relays may strip buttons); the server has the final word.
            return Button(custom_id=key)
        if isinstance(task, Task):
            return task.button(key)
        msg = (
            f"button {key!r} is not a customId; pass the Task (not its id) to press "
            "a button by name, label or emoji"
        )
        raise InvalidRequestError(msg)

    async def change(
        self,
        task: Task | str,
        action: str,
        index: int | None = None,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Upscale, vary or reroll a grid through novicezk's ``/submit/change``.

        The legacy route of novicezk's open-source proxy (and of PLUS, and of the new-api
        relay; trueai removed it in v10): ``action`` is ``"UPSCALE"``, ``"VARIATION"`` or
        ``"REROLL"`` (any case) and ``index`` picks the image, 1 to 4, required for
        UPSCALE and VARIATION. REROLL needs none; 1 is sent, because new-api refuses an
        index of 0 ("index_is_required") and the other servers ignore it. `action` and
        `run_action` use this route by themselves where ``/submit/action`` is missing.

        Args:
            task: a finished IMAGINE, VARIATION, REROLL or BLEND task, or its id.
            action: ``"UPSCALE"``, ``"VARIATION"`` or ``"REROLL"``.
            index: 1..4 (the image in the grid, left to right, top to bottom).

        Raises:
            mjasync.InvalidRequestError: a bad action or index, or a `Task` that is not
                a finished grid; nothing is sent.
            mjasync.TaskNotFoundError: the server does not know the task.
            mjasync.SubmitRejectedError: refused (code 4 "关联任务状态错误" …).
        """
        task_id = task_id_of(task)
        name = action.strip().upper() if isinstance(cast(object, action), str) else action
        if name not in _CHANGE_ACTIONS:
            msg = f'action must be "UPSCALE", "VARIATION" or "REROLL", got {action!r}'
            raise InvalidRequestError(msg)
        if index is None and name != "REROLL":
            msg = f"{name} needs index= 1 to 4 (the image in the grid)"
            raise InvalidRequestError(msg)
        given: object = index
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int) or not 1 <= given <= 4
        ):
            msg = f"index must be 1, 2, 3 or 4, got {index!r}"
            raise InvalidRequestError(msg)
        if isinstance(task, Task):
            _check_change_parent(task)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        return await self._send_change(task_id, name, index or 1, common)

    async def _send_change(
        self, task_id: str, action: str, index: int, common: Mapping[str, Any]
    ) -> Submission:
        body = {"taskId": task_id, "action": action, "index": index, **common}
        return await self._submit("/submit/change", body, task_id=task_id)

    async def modal(
        self,
        task_id: Task | Submission | str,
        *,
        prompt: str | None = None,
        mask: ImageInput | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Confirm a MODAL task (``/submit/modal``) with a prompt and, for Vary (Region), a mask.

        *mask* is PNG bytes, a `Path` or a data URI (white = repaint). Custom zoom
        needs ``--zoom`` between 1 and 2 in *prompt*.

        Raises:
            mjasync.TaskNotFoundError: the server does not know *task_id*.
        """
        target = task_id_of(task_id)
        if prompt is not None:
            if not isinstance(cast(object, prompt), str) or not prompt.strip():
                msg = "prompt must not be blank (leave it None to keep the suggested prompt)"
                raise InvalidRequestError(msg)
            _require_utf8(prompt, "prompt")
        common = self._common(state=state, notify_hook=notify_hook)
        mask_uri = await self._image(mask, "mask", png_only=True) if mask is not None else None
        body = {"taskId": target, "prompt": prompt, "maskBase64": mask_uri, **common}
        return await self._submit("/submit/modal", body, task_id=target)

    async def swap_face(
        self,
        source: ImageInput,
        target: ImageInput,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Put the face in *source* onto *target* (``/insight-face/swap``).

        An image URL is sent as trueai's ``sourceUrl`` / ``targetUrl``
        (``Dto/InsightFaceSwapDto.cs``), never inside ``sourceBase64``: trueai's
        ``FaceSwapService`` parses that field as base64 only and fails on a URL. new-api
        requires both ``sourceBase64`` and ``targetBase64`` (``RelaySwapFace``: code 4
        "sour_base64_and_target_base64_is_required", no task, no charge): on that answer
        the URLs are downloaded (streamed, within ``max_image_bytes``) and sent as data
        URIs, and this client does so up front from then on. Bytes, paths and data URIs
        always go in ``sourceBase64`` / ``targetBase64``.
        """
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        whats = ["source image", "target image"]
        values = [
            await self._image_or_url(source, whats[0]),
            await self._image_or_url(target, whats[1]),
        ]
        if values[0] == values[1]:
            msg = "source and target must be different images"
            raise InvalidRequestError(msg)

        def body(sent: Sequence[str]) -> dict[str, Any]:
            fields: dict[str, Any] = {}
            for side, value in zip(("source", "target"), sent, strict=True):
                fields[f"{side}Url" if is_url(value) else f"{side}Base64"] = value
            return {**fields, **common}

        return await self._submit_inputs("/insight-face/swap", values, whats, body)

    async def edit(
        self,
        prompt: str,
        image: ImageInput,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit an Edit of *image* guided by *prompt* (``/submit/edits``, trueai's body).

        An image URL is sent as is: trueai's ``image`` takes a URL or base64.
        """
        _require_text(prompt, "prompt")
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        image_uri = await self._image_or_url(image, "edit image")
        return await self._submit("/submit/edits", {"prompt": prompt, "image": image_uri, **common})

    async def video(
        self,
        prompt: str,
        *,
        image: ImageInput | None = None,
        end_image: ImageInput | None = None,
        motion: Literal["low", "high"] | None = None,
        loop: bool | None = None,
        video_type: str | None = None,
        batch_size: int | None = None,
        extend: Task | str | None = None,
        index: int | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/submit/video``: animate *image*, or extend video *extend* at *index* (0-3).

        Image URLs for *image* and *end_image* are sent as URLs (trueai's
        ``Dto/SubmitVideoDTO.cs`` takes URLs or base64); nothing is downloaded.
        """
        _require_text(prompt, "prompt")
        if motion is not None and motion not in {"low", "high"}:
            msg = f'motion must be "low" or "high", got {motion!r}'
            raise InvalidRequestError(msg)
        if batch_size is not None and batch_size not in {1, 2, 4}:
            msg = f"batch_size must be 1, 2 or 4, got {batch_size!r}"
            raise InvalidRequestError(msg)
        if extend is not None and (index is None or not 0 <= index <= 3):
            msg = "extending a video needs index= between 0 and 3"
            raise InvalidRequestError(msg)
        if extend is None and image is None:
            msg = "video needs image= (the first frame), or extend= a video task"
            raise InvalidRequestError(msg)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        body = {
            "prompt": prompt,
            "image": (
                await self._image_or_url(image, "first frame") if image is not None else None
            ),
            "endImage": (
                await self._image_or_url(end_image, "last frame") if end_image is not None else None
            ),
            "motion": motion,
            "loop": loop,
            "videoType": video_type,
            "batchSize": batch_size,
            "action": "extend" if extend is not None else None,
            "taskId": task_id_of(extend) if extend is not None else None,
            "index": index if extend is not None else None,
            **common,
        }
        return await self._submit("/submit/video", body)

    async def upload(self, images: Sequence[ImageInput]) -> list[str]:
        """Upload images to the proxy's Discord channel and return their URLs.

        The route uploads bytes, so an image URL is downloaded (streamed, within
        ``max_image_bytes``) and sent as a data URI.
        """
        images = cast(Sequence[ImageInput], self._as_list(images))
        if not images:
            msg = "upload needs at least one image"
            raise InvalidRequestError(msg)
        encoded = await self._images(images, "upload image")
        where = self._where("POST", "/submit/upload-discord-images")

        def parse(response: Response) -> list[str]:
            body = read_body(response, where)
            if body is None:
                msg = f"{where}: empty answer"
                raise DecodeError(msg, status=response.status)
            return _upload_urls(body, where, response.status)

        return await self._request(
            "POST",
            "/submit/upload-discord-images",
            parse,
            json={"base64Array": encoded},
            kind=RequestKind.SUBMIT,
        )

    async def submit(self, path: str, body: Mapping[str, Any]) -> Submission:
        """Send any submit route with a raw JSON body (the escape hatch).

        *path* is relative to ``/mj``: ``"/submit/retexture"`` or ``"submit/retexture"``.
        The body is sent as given, except that None values are dropped.
        """
        path = "/" + _require_text(path, "path").strip().lstrip("/")
        if path.startswith("/mj/"):
            path = path[len("/mj") :]
        if not isinstance(cast(object, body), Mapping):
            msg = "body must be a mapping"
            raise InvalidRequestError(msg)
        return await self._submit(path, body)

    # -- waiting ---------------------------------------------------------------------

    def _get_poller(self) -> Poller:
        if self._closed:
            msg = "this Client is closed"
            raise ClientClosedError(msg)
        if self._poller is None:
            self._poller = Poller(
                self.poll,
                fetch_batch=self._fetch_batch_raw,
                fetch_one=self.fetch,
                per_id=lambda: self._list_route is None,
                hooks=self._notify_hook is not None,
            )
            self._on_close(self._poller.aclose)
            self._start_bus_soon()
        return self._poller

    async def await_task(
        self,
        target: TaskRef,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Wait until a task finishes and return its SUCCESS snapshot.

        Every waiter of this client shares one poller, which batches all awaited ids
        into ``list-by-condition`` requests; with a ``notify_hook`` a notification wakes
        the waiter at once. *on_progress* (a function or a coroutine function) gets each
        changed snapshot (status, progress or preview URL), the final one included; if it
        raises, this call raises that and the poller goes on for everyone else.
        A `Task` that is already finished is judged without a request.

        Args:
            target: a `Submission`, a `Task` or a task id.
            timeout: seconds from now; None waits forever.
            on_progress: called once per changed snapshot.

        Raises:
            mjasync.TaskFailedError: the task ended in FAILURE (``.reason``).
            mjasync.TaskCancelledError: the task was cancelled.
            mjasync.ModalRequiredError: the task waits in MODAL (call `modal`).
            mjasync.TaskNotFoundError: the server does not know the id (after
                ``PollPolicy.not_found_grace``, not at the deadline).
            mjasync.TaskTimeoutError: *timeout* ran out; ``.last`` is the last snapshot.
            mjasync.ClientClosedError: the client was closed meanwhile.
        """
        task_id = task_id_of(target)
        _check_timeout(timeout)
        if isinstance(target, Task) and target.is_terminal:
            return outcome(target)
        waiter = self._get_poller().register(
            task_id, keep_all=on_progress is not None, timeout=timeout
        )
        try:
            task = await await_waiter(waiter, on_progress)
        except (TaskFailedError, TaskCancelledError):
            self._task_finished()
            raise
        self._task_finished()
        return task

    def _task_finished(self) -> None:
        """Count a task waited on to its end; warn once if its notifyHook never came."""
        server = self._server
        server.finished_tasks += 1
        if (
            self._notify_hook is not None
            and not self._notify_warned
            and server.notifications == 0
            and server.finished_tasks >= NOTIFY_SILENCE_TASKS
        ):
            self._notify_warned = True
            logger.warning(
                "notify_hook is set, but no notification has arrived after %d finished "
                "tasks: the server or a relay may drop notifyHook (new-api strips it unless "
                "its operator enables it); waits fall back to polling",
                server.finished_tasks,
            )

    def watch(self, target: TaskRef, *, timeout: float | None = 600.0) -> TaskWatch:
        """Iterate over a task's changed snapshots, ending with the final one.

        ``async for task in mj.watch(sub): ...`` yields each new status, progress or
        preview URL, then the SUCCESS, FAILURE, CANCEL or MODAL snapshot, and stops.
        Unlike `await_task` it never raises for FAILURE: look at ``task.status``.
        Breaking out of the loop stops the polling at once; ``async with`` works too.
        The timeout starts at the first iteration.

        Raises (while iterating):
            mjasync.TaskTimeoutError: *timeout* ran out.
            mjasync.TaskNotFoundError: the server does not know the id.
            mjasync.ClientClosedError: the client was closed meanwhile.
        """
        task_id = task_id_of(target)
        _check_timeout(timeout)
        return TaskWatch(
            lambda: self._get_poller().register(task_id, keep_all=True, timeout=timeout)
        )

    @property
    def poll_stats(self) -> PollStats:
        """Counters of this client's poller: ticks, status requests, snapshots…"""
        if self._poller is None:
            return PollStats()
        return self._poller.stats()

    async def handle_notification(
        self,
        body: NotificationBody,
        *,
        token: str | None,
        max_bytes: int = MAX_NOTIFICATION_BYTES,
    ) -> NotificationResult:
        """Feed one notifyHook callback to the waiters, from any web framework.

        Pass the raw body (or the JSON your framework decoded) and the ``token`` query
        parameter of the request. Answer the HTTP request with ``result.status``:
        401 (no token) and 403 (wrong token) change nothing; 413 above *max_bytes*;
        400 when the body is not a task; 200 otherwise. An accepted snapshot wakes the
        waiters of that task: progress at once, a final status after one confirming
        fetch (unless ``trust_notifications``). Duplicates and late deliveries never
        move a task backwards.
        """
        refused = check_token(self._notify_token, token)
        if refused is not None:
            self._refused(refused)
            return refused
        return self._accept_and_publish(body, max_bytes)

    def _accept_notification(self, body: NotificationBody, max_bytes: int) -> NotificationResult:
        """`handle_notification` once the token matched (the aiohttp handler checked it)."""
        result = parse_notification(body, max_bytes=max_bytes)
        if result.task is not None:
            self._server.notifications += 1
            if self._server.watching:
                self._server.observe_task(result.task.raw)
        if result.task is not None and not self._closed:
            # Through _get_poller: a hook may beat the first await_task, and the
            # poller keeps it for that waiter.
            woke = self._get_poller().notify(result.task, trust=self.trust_notifications)
            if woke:
                result = NotificationResult(result.status, result.reason, result.task, woke)
        return result

    @property
    def webhook_handler(self) -> Callable[[Any], Awaitable[Any]]:
        """An aiohttp handler for the notify route.

        Mount it with ``app.router.add_post(path, mj.webhook_handler)``. The token is
        checked before the body is read; a refused request gets 401/403.
        """
        return aiohttp_handler(
            self._accept_and_publish, lambda: self._notify_token, refused=self._refused
        )

    # -- the notification bus and the shared token (#12) -----------------------------

    @property
    def notify_bus(self) -> NotificationBus | None:
        """The bus given as ``notify_bus=``, or None."""
        return self._bus

    def _init_bus(self, bus: NotificationBus | None) -> None:
        if bus is not None and not isinstance(cast(object, bus), NotificationBus):
            msg = f"notify_bus must be a NotificationBus, got {type(bus).__name__}"
            raise InvalidRequestError(msg)
        self._bus = bus
        self._bus_started = False
        self._bus_tasks: set[asyncio.Task[Any]] = set()
        self._token_warned = False

    def _refused(self, result: NotificationResult) -> None:
        """Warn once per client about a wrong token: the tokens are likely not shared."""
        if result.status == 403 and not self._token_warned:
            self._token_warned = True
            logger.warning(
                "refused a notification whose token differs from this client's notify_token "
                "(further ones are refused silently): every process serving the webhook must "
                "share one token, e.g. MJ_NOTIFY_TOKEN"
            )

    def _accept_and_publish(self, body: NotificationBody, max_bytes: int) -> NotificationResult:
        """The webhook route's path: accept, then hand it to the other processes.

        Only here, never in `_accept_notification`, which bus messages also take: a
        republished bus message would bounce between the processes forever.
        """
        result = self._accept_notification(body, max_bytes)
        if self._bus is not None and result.task is not None and not self._closed:
            # A tracked task, so the route answers the proxy without waiting on the broker.
            self._spawn_bus(self._bus.publish(result.task.raw))
        return result

    def _on_bus_message(self, notification: dict[str, Any]) -> None:
        """A notification another process accepted: the same path as a local one."""
        bus = self._bus
        assert bus is not None
        result = self._accept_notification(notification, bus.max_message_bytes)
        if result.task is None:
            # A well-formed envelope around something that is not a task.
            bus._dropped_invalid += 1

    def _begin_bus(self) -> NotificationBus | None:
        """The bus to start now (its close scheduled before the transport's), or None."""
        bus = self._bus
        if bus is None or self._bus_started or self._closed:
            return None
        self._bus_started = True
        self._on_close(self._close_bus)
        return bus

    async def _start_bus(self) -> None:
        """Subscribe the bus (``async with``): subscribed, or retrying, once this returns."""
        bus = self._begin_bus()
        if bus is not None:
            await bus.start(self._on_bus_message)

    def _start_bus_soon(self) -> None:
        """Subscribe the bus of a client used without ``async with`` (at its first wait)."""
        bus = self._begin_bus()
        if bus is not None:
            self._spawn_bus(bus.start(self._on_bus_message))

    def _spawn_bus(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._bus_tasks.add(task)
        task.add_done_callback(self._bus_task_done)

    def _bus_task_done(self, task: asyncio.Task[Any]) -> None:
        self._bus_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("the notification bus failed", exc_info=task.exception())

    async def _close_bus(self) -> None:
        """Let pending publishes finish (each bounded by the bus), then close the bus."""
        assert self._bus is not None
        try:
            if self._bus_tasks:
                await asyncio.wait(set(self._bus_tasks), timeout=_BUS_CLOSE_WAIT)
        finally:
            for task in list(self._bus_tasks):
                task.cancel()
            await self._bus.aclose()

    # -- queries ---------------------------------------------------------------------

    async def fetch(self, task_id: TaskRef) -> Task:
        """The current snapshot of one task.

        Raises:
            mjasync.TaskNotFoundError: the server does not know the id (empty 200, 204,
                code 3 or 4 "task_no_found"), at once.
            mjasync.RouteNotFoundError: the server has no fetch route there (a 404 or
                405 that is not the proxy's JSON, a web page): check the base URL.
            mjasync.InvalidRequestError: *task_id* cannot be a task id; nothing sent.
        """
        target = task_id_of(task_id)
        path = _task_path(target, "fetch")
        where = self._where("GET", path)

        def parse(response: Response) -> Task:
            body = read_body(response, where, task_id=target)
            if body is None or body == {}:
                msg = f"{where}: task {target} not found (empty answer, HTTP {response.status})"
                raise TaskNotFoundError(msg, task_id=target, status=response.status)
            if self._server.watching:
                self._server.observe_task(body)
            return decode_task(body)

        return await self._request("GET", path, parse)

    async def fetch_many(self, task_ids: Iterable[TaskRef]) -> list[Task]:
        """Snapshots of many tasks, batched; ids the server does not know are left out.

        Uses ``list-by-condition``, falling back to ``list-by-ids`` and then to one fetch
        per id on servers that lack it; the choice is remembered for this client.
        """
        ids = list(dict.fromkeys(task_id_of(t) for t in task_ids))
        tasks: list[Task] = []
        size = self.poll.batch_size
        for start in range(0, len(ids), size):
            tasks.extend(await self._fetch_batch(ids[start : start + size]))
        return tasks

    async def _fetch_batch(self, ids: Sequence[str]) -> list[Task]:
        """One batch of ids through the best route this server offers."""
        items = await self._fetch_batch_raw(ids)
        tasks = [item for item in items if isinstance(item, Task)]
        raw = [item for item in items if not isinstance(item, Task)]
        return tasks + decode_tasks(raw) if raw else tasks

    async def _fetch_batch_raw(self, ids: Sequence[str]) -> list[object]:
        """`_fetch_batch` without decoding: JSON items from the list routes, Tasks from fetch.

        The poller decodes only the snapshots that changed, which is most of its CPU.
        """
        if not ids:
            return []
        while self._list_route is not None:
            route = self._list_route
            where = self._where("POST", route)

            def parse(response: Response, where: str = where) -> list[object]:
                body = read_body(response, where)
                if body is None:
                    return []
                if not isinstance(body, list):
                    msg = f"{where}: expected a JSON array of tasks, got {body_preview(body)}"
                    raise DecodeError(msg, status=response.status, body=body)
                if body and self._server.watching:
                    self._server.observe_task(body[-1])
                return body

            try:
                return await self._request("POST", route, parse, json={"ids": list(ids)})
            except APIError as error:
                if not _route_missing(error):
                    raise
                self._list_route = (
                    "/task/list-by-ids" if route == "/task/list-by-condition" else None
                )
                logger.info("%s is missing on this server; trying %s", route, self._list_route)
        return list(await self._fetch_each(ids))

    async def _fetch_each(self, ids: Sequence[str]) -> list[Task]:
        results: dict[str, Task] = {}
        limiter = anyio.CapacityLimiter(_FALLBACK_FETCH_CONCURRENCY)

        async def one(task_id: str) -> None:
            async with limiter:
                try:
                    results[task_id] = await self.fetch(task_id)
                except TaskNotFoundError:
                    return

        async with anyio.create_task_group() as group:
            for task_id in ids:
                group.start_soon(one, task_id)
        return [results[i] for i in ids if i in results]

    @property
    def batch_route(self) -> str:
        """How this client polls: ``list-by-condition``, ``list-by-ids`` or ``fetch``."""
        return (self._list_route or "/task/fetch").rsplit("/", 1)[-1]

    async def image_seed(self, task_id: TaskRef) -> str:
        """The seed of a finished task (the proxy may take ~60 s to ask Discord)."""
        target = task_id_of(task_id)
        path = _task_path(target, "image-seed")
        where = self._where("GET", path)

        def parse(response: Response) -> str:
            body = read_body(response, where, task_id=target)
            submission = submission_or_raise(body, where, response.status, task_id=target)
            return submission.task_id or ""

        return await self._request("GET", path, parse, timeout=self._image_seed_timeout)

    async def cancel(self, task_id: TaskRef) -> None:
        """Ask the server to cancel a task (PLUS: status CANCEL; trueai: admins only).

        trueai answers an empty 200 whether or not it knows the id (and whether or not
        the task could still be cancelled), so that answer is confirmed with one fetch:
        an unknown id raises instead of passing for a cancelled task.

        Raises:
            mjasync.TaskNotFoundError: the server does not know the id.
            mjasync.APIError: refused (trueai's "演示模式，禁止操作" for a non-admin key).
        """
        target = task_id_of(task_id)
        path = _task_path(target, "cancel")
        where = self._where("POST", path)

        def parse(response: Response) -> bool:
            body = read_body(response, where, task_id=target)
            if isinstance(body, Mapping) and "code" in body:
                code = body.get("code")
                if code not in {1, 22}:
                    submission_or_raise(body, where, response.status, task_id=target)
            return body is None

        if await self._request("POST", path, parse):
            # trueai TaskController.cs Cancel: `return Ok()` for known and unknown ids alike.
            await self.fetch(target)

    async def server_info(self, *, probe: bool = True) -> ServerInfo:
        """What this server was detected to be, and which routes and features it honours.

        The verdict (``dialect``: ``"oss"``, ``"plus"``, ``"trueai"``, ``"newapi"`` or
        ``"unknown"``) and each feature rest on evidence the client gathers as it works:
        the fields of task JSON (trueai's ``isCompleted``, new-api's ``maskBase64``,
        novicezk's missing ``buttons``, PLUS's ``finalZhPrompt``), routes that answered
        or were missing, new-api's web page for unknown routes, notifications received.
        ``ServerInfo.evidence`` says which. With *probe* (the default), the first call
        also sends a few free GETs, never a submit: a GET on a POST-only route answers
        405 where the route exists and 404 where it does not (new-api answers its web
        page); ``GET /task/0/image-seed`` answers the proxy's own not-found JSON.

        What the client does with it: on trueai, which has no channel id, an
        `AccountFilter`'s ``channel_id`` is not sent; without ``/submit/action``, U/V
        and reroll go through ``/submit/change`` (see `action`).

        Raises:
            mjasync.TransportError: every probe failed to reach the server.
        """
        if probe and not self._probed and not self._closed:
            await self._probe()
        return self._server.snapshot(notify_hook=self._notify_hook is not None)

    async def _probe(self) -> None:
        failures: list[MJError] = []

        async def one(path: str) -> None:
            try:
                present, hint, seen = await self._request("GET", path, classify_probe, record=False)
            except MJError as error:
                failures.append(error)
                return
            key = route_key(path)
            where = f"GET /mj{path}: {seen}"
            if present is not None and key is not None and key not in self._server.routes:
                self._server.route(path, present)
            if hint is not None:
                self._server.claim(hint, where)
            elif path == "/submit/action" and present and seen.startswith("Spring"):
                self._server.claim("plus", f"{where}: a Spring server with /submit/action")

        async with anyio.create_task_group() as group:
            for path in _PROBES:
                group.start_soon(one, path)
        if len(failures) == len(_PROBES):
            raise failures[0]
        self._probed = True

    # -- chains and downloads --------------------------------------------------------

    async def run_action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        prompt: str | None = None,
        mask: ImageInput | None = None,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        enable_remix: bool | None = None,
        state: str | None = None,
    ) -> Task:
        """Press a button, confirm the modal if one opens, and return the finished task.

        *button* is anything `action` takes (``"U2"``, ``"vary_region"``, a label, an
        emoji, a customId or a `Button`). When the server opens a modal (code 21, or the
        new task sits in MODAL because a relay rewrote the code), *prompt* and *mask*
        are sent with `modal` and the id it answers is followed; otherwise they are not
        used. Without either, a modal raises `ModalRequiredError`. Custom zoom and Vary
        (Region) always open one, so their inputs are checked before anything is sent.

        Args:
            task: the finished parent task (or its id, with a customId *button*).
            prompt: the modal's prompt; custom zoom needs ``--zoom`` between 1 and 2.
            mask: Vary (Region)'s mask: PNG bytes, a `Path` or a data URI
                (white = repaint).
            timeout: seconds for the whole chain; None waits forever.
            on_progress: gets each changed snapshot, as in `await_task`.
            enable_remix: trueai: force the modal for V/pan/reroll to edit the prompt.

        Raises:
            mjasync.InvalidRequestError: custom zoom without ``--zoom 1..2`` in *prompt*,
                Vary (Region) without *mask*, a blank prompt or a bad mask.
            mjasync.ButtonNotFoundError: the task has no such button.
            mjasync.ModalRequiredError: a modal opened and neither *prompt* nor *mask*
                was given; ``.task`` is the MODAL task, to pass to `modal`.
            mjasync.TaskFailedError, mjasync.TaskTimeoutError: as in `await_task`.
        """
        return await _chains.run_action(
            self,
            task,
            button,
            prompt=prompt,
            mask=mask,
            timeout=timeout,
            on_progress=on_progress,
            enable_remix=enable_remix,
            state=state,
        )

    @overload
    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[Task]: ...

    @overload
    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: bool,
    ) -> list[Task | Exception]: ...

    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        return_exceptions: bool = False,
    ) -> list[Task] | list[Task | Exception]:
        """Press U1..U4 concurrently and return the four upscales in U1..U4 order.

        All four always run to the end: one failure does not cancel the others (the
        server runs them anyway). With ``return_exceptions=True`` a failed upscale is
        its exception in the list; otherwise the first failure, in U order, is raised
        once all four are done, with a note naming the upscales that did finish.

        Args:
            task: a finished grid (or its id, fetched first for its buttons).
            timeout: seconds for each upscale chain; they run side by side.
            on_progress: gets every changed snapshot of all four.
            return_exceptions: return failures in the list instead of raising.

        Raises:
            mjasync.ButtonNotFoundError: the task lacks a U button; nothing was sent.
            mjasync.MJError: the first failed upscale (unless *return_exceptions*).
        """
        outcomes = await _chains.upscale_all(self, task, timeout=timeout, on_progress=on_progress)
        if return_exceptions:
            return outcomes
        failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        if failures:
            finished = [
                f"U{index} -> task {outcome.id}"
                for index, outcome in enumerate(outcomes, 1)
                if isinstance(outcome, Task)
            ]
            failures[0].add_note(
                f"upscale_all: {len(failures)} of 4 upscales failed; finished: "
                + (", ".join(finished) or "none")
            )
            raise failures[0]
        return [outcome for outcome in outcomes if isinstance(outcome, Task)]

    async def download(
        self,
        task: TaskRef,
        directory: str | os.PathLike[str],
        *,
        kind: MediaKind | None = None,
        filename: str | None = None,
        max_bytes: int | None = None,
    ) -> Path:
        """Save a finished task's final image or video in *directory* and return its path.

        *kind* is ``"image"`` or ``"video"``; by default a VIDEO task (or a task whose only
        result is a video, such as a video upscale) saves its video, every other task its
        image. A video is `Task.video_url`; trueai puts a VIDEO task's video in
        ``imageUrl`` too, and that is never saved as an image.

        The file is named `file_stem(task)` (the task id, made safe for a file name) or
        *filename*, with the suffix the content type calls for (``.png``, ``.jpg``,
        ``.webp``, ``.gif``; ``.mp4``, ``.webm``, ``.mov``). A name too long for the
        filesystem is shortened to a prefix plus a hash of the whole name. The body is
        streamed to a temporary file in *directory*, checked (HTTP status, content type,
        size cap, magic bytes, and completeness: an image's end marker, an MP4's box
        structure from its ``ftyp`` box to the end, a WebM's declared segment size) and
        renamed over the final name, so the final name only ever holds a complete file;
        every failure, cancellation included, removes the temporary file. A complete
        file already saved under that name is returned without downloading it again,
        so reruns are free. Transient failures (connection errors, 5xx, 429) are retried
        with the client's `RetryPolicy`. The API key is sent only when the file lives on
        this client's own origin, never to a CDN. Download promptly: result URLs expire.

        Args:
            task: a SUCCESS `Task`; an id or `Submission` is fetched first.
            directory: created if missing.
            kind: ``"image"`` or ``"video"`` (default: see above).
            filename: a plain file name (no path separators, no ``..``); an image or
                video suffix is replaced by the one that matches the content.
            max_bytes: the size cap (default: the client's ``max_download_bytes``).

        Raises:
            mjasync.InvalidRequestError: the task is not SUCCESS, has no URL for *kind*
                (a preview is never saved; ``kind="video"`` on a task without video), or
                *filename* is not a plain name.
            mjasync.DecodeError: the wrong type (an image where a video was asked for,
                and the reverse), not complete, or larger than the cap.
            mjasync.APIError: the host refused (``NotFoundError`` for a 404, typically an
                expired link).
            mjasync.LocalFileError: the filesystem refused (permission denied, disk full,
                a file where the directory should be); also an `OSError`.
        """
        if self._closed:
            msg = "this Client is closed"
            raise ClientClosedError(msg)
        if kind is not None and kind not in {"image", "video"}:
            msg = f'kind must be "image", "video" or None, got {kind!r}'
            raise InvalidRequestError(msg)
        snapshot = task if isinstance(task, Task) else await self.fetch(task)
        chosen: MediaKind = kind if kind is not None else default_kind(snapshot)
        url = media_url(snapshot, chosen) if snapshot.status == "SUCCESS" else ""
        accept = "video/*" if chosen == "video" else "image/*"
        if url and same_origin(url, self._base_url):
            headers = {**self._headers, "Accept": accept}
        else:
            headers = {"User-Agent": self._headers["User-Agent"], "Accept": accept}
        return await download_result(
            snapshot,
            directory,
            kind=chosen,
            transport=self._transport,
            headers=headers,
            retry=self.retry,
            rng=self._rng,
            filename=filename,
            max_bytes=self._max_download_bytes if max_bytes is None else max_bytes,
        )


class _NotNow:
    """A queue-full or 429 answer to a gated submit, carried out of `with_retries`."""

    __slots__ = ("error",)

    def __init__(self, error: QueueFullError | RateLimitError) -> None:
        self.error = error


def _says_newapi(error: APIError) -> bool:
    """new-api's own refusals: ``{"error": {..., "type": "new_api_error"}}``, task_no_found."""
    body = error.body
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and inner.get("type") == "new_api_error":
            return True
    description = error.description or ""
    return "task_no_found" in description or "task_not_found" in description


def _change_of(button: Button) -> tuple[str, int] | None:
    """What ``/submit/change`` sends for *button*, or None when it cannot press it."""
    if button.implied and button.change_action is not None:
        return button.change_action, button.change_index or 1
    name = button.name
    if name is None:
        return None
    if name == "reroll":
        return "REROLL", 1
    if len(name) == 2 and name[0] in "UV" and name[1] in "1234":
        return ("UPSCALE" if name[0] == "U" else "VARIATION"), int(name[1])
    return None


def _check_change_parent(task: Task) -> None:
    """Refuse a parent ``/submit/change`` certainly refuses (novicezk SubmitController.java)."""
    if task.status != TaskStatus.SUCCESS:
        msg = (
            f"task {task.id} is {task.status or 'of unknown status'}: /submit/change needs a "
            "finished (SUCCESS) grid; wait for it with await_task first"
        )
        raise InvalidRequestError(msg)
    if task.action is not None and task.action not in _CHANGE_PARENTS:
        msg = (
            f"task {task.id} is an {task.action} task: /submit/change acts only on "
            "IMAGINE, VARIATION, REROLL and BLEND grids"
        )
        raise InvalidRequestError(msg)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        msg = f"timeout must be >= 0 seconds or None, got {timeout!r}"
        raise InvalidRequestError(msg)


def _refuses_urls(error: APIError) -> bool:
    """A validation refusal (code 4) that asks for base64: the route takes no URLs here."""
    if isinstance(error, ServerError | RateLimitError | QueueFullError | TaskNotFoundError):
        return False
    return error.code == 4 and "base64" in (error.description or "").lower()


def _route_missing(error: APIError) -> bool:
    if isinstance(error, RouteNotFoundError):
        return True
    if isinstance(error, TaskNotFoundError):
        return False
    return error.status in _ROUTE_MISSING_STATUSES


def _upload_urls(body: object, where: str, status: int) -> list[str]:
    """An upload answer: ``result`` is a list of URLs."""
    if not isinstance(body, Mapping):
        msg = f"{where}: expected a JSON object, got {body_preview(body)}"
        raise DecodeError(msg, status=status, body=body)
    code = body.get("code")
    result = body.get("result")
    if code != 1 or not isinstance(result, list):
        if code == 1:
            msg = f"{where}: accepted but no URL list in {body_preview(body)}"
            raise DecodeError(msg, status=status, code=1, body=body)
        submission_or_raise(body, where, status)
        msg = f"{where}: expected a URL list, got {body_preview(body)}"
        raise DecodeError(msg, status=status, body=body)
    return [str(url) for url in result if isinstance(url, str)]


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))
