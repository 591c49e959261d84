"""The notification bus: accepted notifyHook snapshots, shared between worker processes.

An app served by several processes (``uvicorn --workers 4``, several containers) gets each
proxy callback on one process only, while the waiter for that task may live in another.
Every process publishes each notification it accepted (token checked) once; every other
process hears it and wakes its own waiters through the same path as a local notification.
The bus only makes waits finish sooner: polling stays authoritative, so a lost, late or
duplicated message costs latency, never a result.

A message is a small JSON envelope around the notification's JSON object::

    {"mjasync": 1, "origin": "<32 hex>", "notification": {...the task snapshot...}}

``origin`` names the publishing bus. A bus does not hand its own messages back to its own
callback: the process that published already woke its local waiters on the webhook route,
so the echo would only repeat that wake-up (one more confirming-fetch request, a duplicate
in the poller's counters). Skipping it is one string comparison and keeps "one accepted
notification, one local wake-up per process" exact. It assumes one bus per `Client`.

`NotificationBus` is the interface a broker implements; `LocalBus` (one process, for tests)
and `_redis_bus.RedisBus` (Redis pub/sub through redis-py's asyncio client) are the two
provided.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Self

import attrs

from ._errors import InvalidRequestError
from ._json import try_json
from ._webhook import MAX_NOTIFICATION_BYTES

__all__ = [
    "DEFAULT_CHANNEL",
    "BusStats",
    "LocalBus",
    "LocalHub",
    "NotificationBus",
    "OnMessage",
]

logger = logging.getLogger("mjasync.bus")

DEFAULT_CHANNEL = "mjasync:notifications"
"""The Redis pub/sub channel `RedisBus` uses unless told otherwise."""

OnMessage = Callable[[dict[str, Any]], object]
"""The callback `NotificationBus.start` takes: one decoded notification object from
another process. It runs in the bus's reader task and must not block; what it returns is
ignored and an exception it raises is logged, never fatal to the bus."""

_VERSION = 1
# Room for the envelope around a notification of max_message_bytes: the keys, the version
# and an origin of up to 64 characters (other implementations may use longer ids).
_ENVELOPE_ALLOWANCE = 256


@attrs.frozen(kw_only=True)
class BusStats:
    """Counters of one bus since it was created (see `NotificationBus.stats`).

    Attributes:
        published: notifications the broker accepted from this bus.
        received: notifications from other processes handed to the callback.
        echoes: this bus's own messages heard back and skipped.
        dropped_invalid: messages dropped because they were not an envelope around a
            JSON object (not JSON, not an object, unknown version); on publish, payloads
            that were not a JSON object.
        dropped_oversize: messages dropped for size, on publish or on receipt.
        publish_failures: publishes that did not reach the broker (down, slow, closed).
        reconnects: times the subscriber got its subscription back after losing it.
        connected: the subscriber is subscribed right now.
    """

    published: int = 0
    received: int = 0
    echoes: int = 0
    dropped_invalid: int = 0
    dropped_oversize: int = 0
    publish_failures: int = 0
    reconnects: int = 0
    connected: bool = False


class NotificationBus(abc.ABC):
    """Carries accepted notifications between processes; subclass it for another broker.

    Life cycle: `start` once with the callback, `publish` any time (before `start` too),
    `aclose` once (also ``async with bus:``). A client owns its bus: one bus per client.

    An implementation moves bytes. It turns a notification into a message with
    `_outgoing` (which enforces the size cap, counts drops, and refuses once closed),
    hands every message it receives to `_receive` (which checks size and envelope, skips
    its own echo, counts, and calls the callback), and keeps `_published`, `_publish_failures`,
    `_reconnects` and `_connected` current. `publish` must never raise for a broker
    failure: it counts it and returns False.
    """

    def __init__(self, *, max_message_bytes: int = MAX_NOTIFICATION_BYTES) -> None:
        if max_message_bytes < 2:
            msg = f"max_message_bytes must be an int >= 2, got {max_message_bytes!r}"
            raise InvalidRequestError(msg)
        self.max_message_bytes = max_message_bytes
        self.origin = secrets.token_hex(16)
        self._on_message: OnMessage | None = None
        self._started = False
        self._closed = False
        self._published = 0
        self._received = 0
        self._echoes = 0
        self._dropped_invalid = 0
        self._dropped_oversize = 0
        self._publish_failures = 0
        self._reconnects = 0
        self._connected = False

    @abc.abstractmethod
    async def start(self, on_message: OnMessage) -> None:
        """Subscribe and hand every notification from another process to *on_message*.

        Returns once the first subscription attempt is over; when the broker is not
        reachable the bus keeps trying in the background and never raises for it.

        Raises:
            RuntimeError: the bus was already started, or is closed.
        """

    @abc.abstractmethod
    async def publish(self, notification: bytes | Mapping[str, Any]) -> bool:
        """Send one accepted notification (its JSON body, or the decoded object) to the others.

        True when the broker took it. Never raises for a broker that is down, slow or
        closed: the failure is counted in `stats` and the caller's polling finishes the
        waits anyway.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the subscriber and release every connection; idempotent.

        The release finishes even when the caller is cancelled meanwhile; the
        cancellation is raised afterwards.
        """

    def note_invalid(self) -> None:
        """Count one message its callback could not use (a JSON object that is no task)."""
        self._dropped_invalid += 1

    @property
    def stats(self) -> BusStats:
        """A snapshot of this bus's counters."""
        return BusStats(
            published=self._published,
            received=self._received,
            echoes=self._echoes,
            dropped_invalid=self._dropped_invalid,
            dropped_oversize=self._dropped_oversize,
            publish_failures=self._publish_failures,
            reconnects=self._reconnects,
            connected=self._connected,
        )

    @property
    def connected(self) -> bool:
        """True while the subscriber is subscribed."""
        return self._connected

    @property
    def closed(self) -> bool:
        """True once `aclose` was called."""
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- for implementations ---------------------------------------------------------------

    def _begin(self, on_message: OnMessage) -> None:
        """`start`'s checks; remembers the callback."""
        if self._closed:
            msg = "this bus is closed"
            raise RuntimeError(msg)
        if self._started:
            msg = "this bus was already started"
            raise RuntimeError(msg)
        self._started = True
        self._on_message = on_message

    def _encode(self, notification: bytes | Mapping[str, Any]) -> bytes | None:
        """The envelope for *notification*, or None (counted) when it cannot be sent."""
        if isinstance(notification, Mapping):
            try:
                body = json.dumps(notification, separators=(",", ":")).encode()
            except (TypeError, ValueError):
                self._dropped_invalid += 1
                return None
        else:
            body = bytes(notification)
            if len(body) > self.max_message_bytes:
                self._dropped_oversize += 1
                return None
            # Decoded once here so that only a single JSON object is ever framed: bytes
            # that are not one (or that carry a second "notification" key after a
            # comma) would make an envelope that says something else.
            decoded, _ = try_json(body)
            if not isinstance(decoded, dict):
                self._dropped_invalid += 1
                return None
        if len(body) > self.max_message_bytes:
            self._dropped_oversize += 1
            return None
        head = f'{{"mjasync":{_VERSION},"origin":"{self.origin}","notification":'
        return head.encode() + body + b"}"

    def _outgoing(self, notification: bytes | Mapping[str, Any]) -> bytes | None:
        """The message `publish` sends, or None: a notification `_encode` refused, or a
        closed bus (counted as a failed publish)."""
        message = self._encode(notification)
        if message is None:
            return None
        if self._closed:
            self._publish_failures += 1
            return None
        return message

    def _receive(self, message: object) -> None:
        """Check one message off the broker and hand its notification to the callback."""
        if not isinstance(message, bytes | bytearray | memoryview | str):
            self._dropped_invalid += 1
            return
        raw = message.encode() if isinstance(message, str) else bytes(message)
        if len(raw) > self.max_message_bytes + _ENVELOPE_ALLOWANCE:
            self._dropped_oversize += 1
            return
        envelope, _ = try_json(raw)
        if not (
            isinstance(envelope, dict)
            and type(envelope.get("mjasync")) is int
            and envelope["mjasync"] == _VERSION
            and isinstance(envelope.get("origin"), str)
            and isinstance(envelope.get("notification"), dict)
        ):
            self._dropped_invalid += 1
            return
        if envelope["origin"] == self.origin:
            self._echoes += 1
            return
        if self._closed or self._on_message is None:
            return
        self._received += 1
        try:
            self._on_message(envelope["notification"])
        except Exception:
            logger.exception("the notification bus callback raised; the bus goes on")


# -- in one process --------------------------------------------------------------------------


class LocalHub:
    """An in-process broker: every `LocalBus` made on the same hub hears the others.

    For tests and for several clients in one process (one event loop).
    """

    def __init__(self) -> None:
        self._buses: list[LocalBus] = []

    def _publish(self, message: bytes) -> None:
        for bus in list(self._buses):
            # Delivered on a later loop turn, as a real broker would, so a publisher never
            # runs another client's callback inside its own webhook route.
            bus._loop.call_soon(bus._receive, message)


class LocalBus(NotificationBus):
    """A `NotificationBus` over a `LocalHub` (a fresh hub of its own when none is given)."""

    def __init__(
        self, hub: LocalHub | None = None, *, max_message_bytes: int = MAX_NOTIFICATION_BYTES
    ) -> None:
        super().__init__(max_message_bytes=max_message_bytes)
        self.hub = hub if hub is not None else LocalHub()
        self._loop: asyncio.AbstractEventLoop

    def __repr__(self) -> str:
        return f"LocalBus(origin={self.origin!r})"

    async def start(self, on_message: OnMessage) -> None:
        """Join the hub; messages published on it from now on reach *on_message*."""
        self._begin(on_message)
        self._loop = asyncio.get_running_loop()
        self.hub._buses.append(self)
        self._connected = True

    async def publish(self, notification: bytes | Mapping[str, Any]) -> bool:
        """Hand the notification to every other bus on the hub."""
        message = self._outgoing(notification)
        if message is None:
            return False
        self.hub._publish(message)
        self._published += 1
        return True

    async def aclose(self) -> None:
        """Leave the hub."""
        self._closed = True
        self._connected = False
        if self in self.hub._buses:
            self.hub._buses.remove(self)
