"""Exceptions raised by mjasync; every one derives from `MJError`.

```
MJError
├── InvalidRequestError (ValueError)  bad input caught before anything was sent
├── ButtonNotFoundError (LookupError)  Task.button(key) found nothing
├── TransportError (ConnectionError)  no HTTP response
│   ├── ConnectError                  the request provably never reached the server
│   └── RequestTimeoutError (TimeoutError)
├── APIError                          .status .code .description .body
│   ├── AuthenticationError           401 / 403
│   ├── RateLimitError                429, relay code 30; .retry_after
│   ├── ServerError                   5xx
│   ├── NotFoundError → TaskNotFoundError (.task_id)
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
ever holds the API key: messages are built from status, code and description only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "APIError",
    "AuthenticationError",
    "BannedPromptError",
    "ButtonNotFoundError",
    "ClientClosedError",
    "ConnectError",
    "DecodeError",
    "InvalidRequestError",
    "MJError",
    "ModalRequiredError",
    "NotFoundError",
    "QueueFullError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "SubmitRejectedError",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "TransportError",
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


class ConnectError(TransportError):
    """The request provably never reached the server (refused, DNS, connect timeout).

    A submit that fails this way can be retried without risk of paying twice.
    """


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


class AuthenticationError(APIError):
    """HTTP 401 or 403: the API key is missing, wrong, or not allowed."""


class RateLimitError(APIError):
    """HTTP 429 or relay code 30; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """HTTP 5xx."""


class NotFoundError(APIError):
    """The server does not know the resource (HTTP 404, or the route is missing)."""


class TaskNotFoundError(NotFoundError):
    """The server does not know this task id."""

    def __init__(self, message: str, *, task_id: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.task_id = task_id


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
        reason = task.fail_reason or "no reason given"
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
