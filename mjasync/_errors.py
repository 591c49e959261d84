"""Exceptions raised by mjasync; every one derives from `MJError`.

```
MJError
├── InvalidRequestError (ValueError)  bad input caught before anything was sent
├── ButtonNotFoundError (LookupError)  Task.button(key) found nothing
├── TransportError (ConnectionError)  no HTTP response
│   ├── ConnectError                  the request provably never reached the server
│   └── RequestTimeoutError (TimeoutError)
├── APIError                          .status .code .description .body
│   ├── AuthenticationError           401 / 403; .auth_style .suggested_auth
│   ├── RateLimitError                429, relay code 30, trueai's empty 403; .retry_after
│   ├── ServerError                   5xx
│   ├── NotFoundError                 the server does not know the resource
│   │   ├── TaskNotFoundError         .task_id: the server does not know this task
│   │   └── RouteNotFoundError        .url: the server has no such route (404/405, HTML)
│   ├── SubmitRejectedError           a non-accepting code; .properties
│   │   ├── QueueFullError            23, or trueai's 9 "queue full"
│   │   └── BannedPromptError         24; .banned_word
│   └── DecodeError                   a body that is not the promised shape
├── TaskError                         .task
│   ├── TaskFailedError               FAILURE; .reason
│   ├── TaskCancelledError            CANCEL
│   └── ModalRequiredError            MODAL: call modal() or pass prompt= to run_action
├── TaskTimeoutError (TimeoutError)   .task_id, .last (last snapshot or None)
└── ClientClosedError (RuntimeError)  the client was closed while a call waited
```

Every exception pickles cleanly (``__reduce__`` rebuilds it from its fields) and none
ever holds the API key: messages are built from status, code and description, and the
client redacts the key from anything a server echoed back.

`delivery_of` answers, for any of them, the question a caller of a paid submit must
ask before resending: did this request reach the server (`Delivery`)?
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Any, Literal

from ._auth_shapes import auth_shape
from ._glossary import with_english
from ._redact import host_of

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "APIError",
    "AuthenticationError",
    "BannedPromptError",
    "ButtonNotFoundError",
    "ClientClosedError",
    "ConnectError",
    "ConnectReason",
    "DecodeError",
    "Delivery",
    "InvalidRequestError",
    "MJError",
    "ModalRequiredError",
    "NotFoundError",
    "QueueFullError",
    "RateLimitError",
    "RequestTimeoutError",
    "RouteNotFoundError",
    "ServerError",
    "SubmitRejectedError",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "TransportError",
    "delivery_of",
]

_BODY_PREVIEW = 300


class MJError(Exception):
    """Root of every exception mjasync raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), self.__dict__.copy())


class InvalidRequestError(MJError, ValueError):
    """Bad input, caught before anything was sent to the server."""


class ButtonNotFoundError(MJError, LookupError):
    """`Task.button(key)` found no button; the message lists the buttons the task has."""

    def __init__(self, message: str, *, key: str = "", available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.available = available

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


class ClientClosedError(MJError, RuntimeError):
    """The client was closed (or not yet opened) while a call needed it."""


class TransportError(MJError, ConnectionError):
    """No HTTP response arrived: connection refused, reset, DNS failure or timeout."""


ConnectReason = Literal[
    "connection refused",
    "host name not found (DNS)",
    "TLS handshake failed",
    "connection timed out",
    "network unreachable",
    "invalid URL",
    "no free connection",
    "could not connect",
]
"""Why a `ConnectError` never reached the server; ``"no free connection"`` is this
process's own pool running out (``pool_timeout``), not the server."""

# The texts of aiohttp's connect failures (after "could not connect (<kind>: <detail>)")
# on Linux, macOS and Windows, for a ConnectError built from a message alone (a custom
# transport's, a test's); the first pattern that matches names the cause.
_REASONS: tuple[tuple[re.Pattern[str], ConnectReason], ...] = (
    (re.compile(r"no free connection", re.IGNORECASE), "no free connection"),
    (
        re.compile(
            r"DNSError|Name or service not known|name resolution|nodename nor servname"
            r"|getaddrinfo failed|No address associated|Domain name not found",
            re.IGNORECASE,
        ),
        "host name not found (DNS)",
    ),
    # Case matters: every aiohttp connect message says "ssl:default" or "ssl:True".
    (re.compile(r"Certificate|SSLError|\[SSL"), "TLS handshake failed"),
    (re.compile(r"ConnectionTimeoutError|timed out|timeout", re.I), "connection timed out"),
    (
        re.compile(r"Connect call failed|refused|Errno 111|WinError 10061", re.IGNORECASE),
        "connection refused",
    ),
    (re.compile(r"unreachable|No route to host", re.IGNORECASE), "network unreachable"),
    (re.compile(r"invalid URL", re.IGNORECASE), "invalid URL"),
)
# "POST http://h:9/mj/submit/imagine: ..." -> the URL every transport message starts with.
_WHERE = re.compile(r"^[A-Z]+ (\S+?):? ")


def _reason_in(message: str) -> ConnectReason:
    for pattern, reason in _REASONS:
        if pattern.search(message):
            return reason
    return "could not connect"


class ConnectError(TransportError):
    """The request provably never reached the server (refused, DNS, connect timeout).

    A submit that fails this way can be retried without risk of paying twice.

    Attributes:
        reason: why (a `ConnectReason`): ``"connection refused"``, ``"host name not
            found (DNS)"``, ``"connection timed out"``... ``"no free connection"`` is
            this process's pool running out (``pool_timeout``), not the server. Given
            by the transport; read from the message when a `ConnectError` is built
            from one alone.
        host: ``host:port`` of the server as the URL names it (never credentials), or
            None when neither the transport nor the message says.
    """

    def __init__(
        self, message: str, *, reason: ConnectReason | None = None, host: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason: ConnectReason = reason if reason is not None else _reason_in(message)
        if host is None:
            where = _WHERE.match(message)
            host = host_of(where.group(1)) if where else None
        self.host = host


class RequestTimeoutError(TransportError, TimeoutError):
    """The request was sent but no complete response arrived in time."""


def _rebuild(cls: type[MJError], state: dict[str, Any]) -> MJError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class APIError(MJError):
    """The server answered, and the answer is an error.

    Attributes:
        status: HTTP status code (200 for business errors carried in the body).
        code: the proxy's business ``code``, when the body had one.
        description: the server's text (``description`` or ``message``), localized.
        description_en: the same with English after a Chinese text (``队列已满 (the
            queue is full; try again later)``), or None.
        body: the decoded JSON body, or the text when it was not JSON.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        description: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.description = description
        self.body = body

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))

    @property
    def description_en(self) -> str | None:
        """``description`` with English after a Chinese server text, as messages show it.

        ``队列已满 (the queue is full; try again later)``; a text with no known English
        is returned as is; None when the server gave no description.
        """
        return with_english(self.description) if self.description else None


class AuthenticationError(APIError):
    """HTTP 401 or 403: the API key is missing, wrong, sent the wrong way, or not allowed.

    Attributes:
        auth_style: how the key was sent (``"bearer"``, ``"authorization"`` or
            ``"mj-api-secret"``), or None when no key was sent at all.
        auth_header: the header that carried it (``"Authorization"`` or
            ``"mj-api-secret"``), or None; never the key itself.
        suggested_auth: other ``auth=`` styles the answer's shape points to, most
            likely first (an empty 401 is novicezk's, which reads ``mj-api-secret``;
            trueai's "Authorization header missing." wants the raw key in
            ``Authorization``); empty when the shape suggests none.
        refused_by: the server the refusal's shape points to, in a sentence (or "").
        reads_auth: the ``auth=`` styles that server reads (or ()).
    """

    def __init__(
        self,
        message: str,
        *,
        auth_style: str | None = None,
        auth_header: str | None = None,
        suggested_auth: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.auth_style = auth_style
        self.auth_header = auth_header
        self.suggested_auth = suggested_auth

    @property
    def refused_by(self) -> str:
        """Which server refuses this way, in a sentence; empty when the shape names none.

        ``"an empty 401 is how novicezk's midjourney-proxy refuses a missing or wrong
        mj-api-secret header"``; read from ``status`` and ``body``.
        """
        return auth_shape(self.status or 401, self.body)[0]

    @property
    def reads_auth(self) -> tuple[str, ...]:
        """The ``auth=`` styles the refusing server reads, preferred first (empty: unknown).

        Unlike ``suggested_auth`` it includes the style that was sent, so a refusal
        from a server that reads the key where it was sent points at the key itself.
        """
        return auth_shape(self.status or 401, self.body)[1]


class RateLimitError(APIError):
    """HTTP 429 or relay code 30; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """HTTP 5xx."""


class NotFoundError(APIError):
    """The server does not know the resource: a task (`TaskNotFoundError`) or a route."""


class TaskNotFoundError(NotFoundError):
    """The server does not know this task id."""

    def __init__(self, message: str, *, task_id: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.task_id = task_id


class RouteNotFoundError(NotFoundError):
    """The server has no such route: the base URL is wrong, or this server lacks it.

    Raised for a 404/405 that is not the proxy's own JSON (Spring's default error
    page, an empty body, HTML) and for an answer that is not JSON at all, such as the
    web page new-api serves with HTTP 200 for paths it does not know. Never raised for
    an unknown task. ``url`` is the whole URL asked for (without any query string).
    """

    def __init__(self, message: str, *, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.url = url


class SubmitRejectedError(APIError):
    """A submit answered with a code other than accepted (1, 22) or modal (21)."""

    def __init__(
        self, message: str, *, properties: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.properties: dict[str, Any] = properties or {}


class QueueFullError(SubmitRejectedError):
    """The server's queue is full (code 23, or trueai's code 9 "queue full"): retry later."""


class BannedPromptError(SubmitRejectedError):
    """The prompt contains a banned word (code 24); ``banned_word`` names it when sent."""

    @property
    def banned_word(self) -> str | None:
        """The offending word, as the server reported it."""
        word = self.properties.get("bannedWord")
        return None if word is None else str(word)


class DecodeError(APIError):
    """The body was not the shape the endpoint promises."""


class TaskError(MJError):
    """A task reached a state other than SUCCESS; ``task`` is its last snapshot."""

    def __init__(self, task: Task, message: str | None = None) -> None:
        super().__init__(message or f"task {task.id} ended {task.status or 'without status'}")
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.message))


class TaskFailedError(TaskError):
    """The task ended in FAILURE; ``reason`` is the server's ``failReason``."""

    def __init__(self, task: Task, message: str | None = None) -> None:
        reason = with_english(task.fail_reason) if task.fail_reason else "no reason given"
        super().__init__(task, message or f"task {task.id} failed: {reason}")

    @property
    def reason(self) -> str | None:
        """The server's ``failReason`` text."""
        return self.task.fail_reason


class TaskCancelledError(TaskError):
    """The task was cancelled (status CANCEL)."""

    def __init__(self, task: Task, message: str | None = None) -> None:
        super().__init__(task, message or f"task {task.id} was cancelled")


class ModalRequiredError(TaskError):
    """The task waits in MODAL: submit `modal()` or pass ``prompt=`` to `run_action()`."""

    def __init__(self, task: Task, message: str | None = None) -> None:
        super().__init__(
            task,
            message
            or (
                f"task {task.id} is waiting for a modal confirmation: call "
                "modal(task_id, prompt=..., mask=...) or run_action(..., prompt=...)"
            ),
        )


class TaskTimeoutError(MJError, TimeoutError):
    """The wait's deadline passed; ``last`` is the last snapshot seen, or None."""

    def __init__(self, message: str, *, task_id: str = "", last: Task | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.last = last

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def body_preview(body: object) -> str:
    """A short, single-line rendering of a body for error messages."""
    text = body if isinstance(body, str) else repr(body)
    text = " ".join(text.split())
    return text if len(text) <= _BODY_PREVIEW else text[:_BODY_PREVIEW] + "…"


class Delivery(enum.Enum):
    """Did a failed request reach the server? The question before resending a paid submit.

    midjourney-proxy has no idempotency keys: a submit that reached the server may have
    started a paid job even though the caller saw an error.
    """

    NOT_SENT = "not_sent"
    """Provably never reached the server: connection refused, DNS, no free pooled
    connection in time, or refused by the client before sending. Safe to resend."""

    REJECTED = "rejected"
    """The server answered and created nothing: a 4xx, a business code (queue full,
    banned prompt, unknown task), 429, a missing route. Resending is safe (and, unless
    the refusal was "not now", useless)."""

    MAYBE_SENT = "maybe_sent"
    """It may have been accepted: a read timeout, a 5xx, a connection dropped after
    sending, a malformed answer. Resending could pay twice; look for the task first."""


def delivery_of(error: BaseException) -> Delivery:
    """Whether the request that raised *error* may have reached the server.

    Anything mjasync does not recognise (a cancellation mid-request, a bug) is
    `Delivery.MAYBE_SENT`: the only answer that never leads to paying twice.
    """
    if isinstance(error, ConnectError | InvalidRequestError | ButtonNotFoundError):
        return Delivery.NOT_SENT
    if isinstance(error, ClientClosedError):
        return Delivery.NOT_SENT  # raised before anything is handed to the transport
    if isinstance(error, ServerError | DecodeError):
        return Delivery.MAYBE_SENT
    if isinstance(
        error,
        AuthenticationError | RateLimitError | NotFoundError | SubmitRejectedError,
    ):
        return Delivery.REJECTED
    if isinstance(error, APIError) and error.status is not None and 400 <= error.status < 500:
        return Delivery.REJECTED
    return Delivery.MAYBE_SENT
