"""Asyncio-native client for the midjourney-proxy HTTP API.

```python
async with mjasync.Client("http://localhost:8080", "key") as mj:
    grid = await mj.await_task(await mj.imagine("a red fox, watercolor"))
```
"""

from .__about__ import __version__
from ._admission import SubmitGate
from ._bus import BusStats, LocalBus, LocalHub, NotificationBus
from ._chains import gather_chains
from ._client import AuthStyle, Client
from ._detect import Dialect, ServerInfo
from ._download import LocalFileError, file_stem
from ._errors import (
    APIError,
    AuthenticationError,
    BannedPromptError,
    ButtonNotFoundError,
    ClientClosedError,
    ConnectError,
    ConnectReason,
    DecodeError,
    Delivery,
    InvalidRequestError,
    MJError,
    ModalRequiredError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    RouteNotFoundError,
    ServerError,
    SubmitRejectedError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    TransportError,
    delivery_of,
)
from ._images import DEFAULT_MAX_IMAGE_BYTES, ImageInput, sniff_mime
from ._media import MediaKind
from ._models import (
    TERMINAL_STATUSES,
    AccountFilter,
    Button,
    Submission,
    Task,
    TaskAction,
    TaskRef,
    TaskStatus,
)
from ._policy import PollPolicy, PollStats, RetryPolicy, backoff
from ._redis_bus import RedisBus
from ._transport import AiohttpTransport, AsyncTransport, Request, Response, StreamResponse
from ._waiters import TaskWatch
from ._webhook import NotificationResult

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "TERMINAL_STATUSES",
    "APIError",
    "AccountFilter",
    "AiohttpTransport",
    "AsyncTransport",
    "AuthStyle",
    "AuthenticationError",
    "BannedPromptError",
    "BusStats",
    "Button",
    "ButtonNotFoundError",
    "Client",
    "ClientClosedError",
    "ConnectError",
    "ConnectReason",
    "DecodeError",
    "Delivery",
    "Dialect",
    "ImageInput",
    "InvalidRequestError",
    "LocalBus",
    "LocalFileError",
    "LocalHub",
    "MJError",
    "MediaKind",
    "ModalRequiredError",
    "NotFoundError",
    "NotificationBus",
    "NotificationResult",
    "PollPolicy",
    "PollStats",
    "QueueFullError",
    "RateLimitError",
    "RedisBus",
    "Request",
    "RequestTimeoutError",
    "Response",
    "RetryPolicy",
    "RouteNotFoundError",
    "ServerError",
    "ServerInfo",
    "StreamResponse",
    "Submission",
    "SubmitGate",
    "SubmitRejectedError",
    "Task",
    "TaskAction",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskRef",
    "TaskStatus",
    "TaskTimeoutError",
    "TaskWatch",
    "TransportError",
    "__version__",
    "backoff",
    "delivery_of",
    "file_stem",
    "gather_chains",
    "sniff_mime",
]

# Tracebacks and reprs say mjasync.TaskFailedError, not mjasync._errors.TaskFailedError.
# Only exceptions: cattrs resolves model annotations through __module__.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and issubclass(_obj, BaseException):
        _obj.__module__ = __name__
del _name, _obj
