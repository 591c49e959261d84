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
and `RedisBus` (Redis pub/sub through redis-py's asyncio client) are the two provided.
redis-py is imported only when a `RedisBus` is created, so ``import mjasync`` never needs it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from ._errors import InvalidRequestError
from ._webhook import MAX_NOTIFICATION_BYTES

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client

__all__ = [
    "DEFAULT_CHANNEL",
    "BusStats",
    "LocalBus",
    "LocalHub",
    "NotificationBus",
    "OnMessage",
    "RedisBus",
    "redact_url",
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
_REDACTED = "***"
# After an outage warning, further outages within this many seconds log at DEBUG only.
_QUIET_AFTER_WARNING = 60.0


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
    `_encode` (which enforces the size cap and counts drops), hands every message it
    receives to `_receive` (which checks size and envelope, skips its own echo, counts,
    and calls the callback), and keeps `_published`, `_publish_failures`,
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
            try:
                valid = isinstance(json.loads(body), dict)
            except (ValueError, RecursionError):
                valid = False
            if not valid:
                self._dropped_invalid += 1
                return None
        if len(body) > self.max_message_bytes:
            self._dropped_oversize += 1
            return None
        head = f'{{"mjasync":{_VERSION},"origin":"{self.origin}","notification":'
        return head.encode() + body + b"}"

    def _receive(self, message: object) -> None:
        """Check one message off the broker and hand its notification to the callback."""
        if not isinstance(message, bytes | bytearray | memoryview | str):
            self._dropped_invalid += 1
            return
        raw = message.encode() if isinstance(message, str) else bytes(message)
        if len(raw) > self.max_message_bytes + _ENVELOPE_ALLOWANCE:
            self._dropped_oversize += 1
            return
        try:
            envelope = json.loads(raw)
        except (ValueError, RecursionError):
            self._dropped_invalid += 1
            return
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
        message = self._encode(notification)
        if message is None:
            return False
        if self._closed:
            self._publish_failures += 1
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


# -- Redis -----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """*url* with its password replaced by ``***`` (in the userinfo and a ``password=`` query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # Without a colon the one field may be a password written where a user goes.
        netloc = f"{user}:{_REDACTED}@{hostport}" if colon else f"{_REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in pairs):
            query = urlencode(
                [(k, _REDACTED if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _import_redis() -> ModuleType:
    try:
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
    except ImportError as exc:
        msg = "RedisBus needs redis-py; install it with: pip install 'mjasync[redis]'"
        raise ImportError(msg, name="redis") from exc
    return redis


class RedisBus(NotificationBus):
    """A `NotificationBus` on Redis pub/sub (redis-py's asyncio client).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` or
            ``unix://…``. The password never appears in logs or in the repr.
        channel: the pub/sub channel every process of one app shares.
        max_message_bytes: the largest notification carried; larger ones are dropped and
            counted, on publish and on receipt.
        publish_timeout: how long one publish may take (connecting included) before it
            gives up and counts a failure; the webhook route waits at most this long.
        connect_timeout: how long the subscriber may take to connect and subscribe.
        ping_interval: an idle subscriber sends a PING this often and reconnects when
            none came back for 1.5 intervals, so a silently dead link is noticed.
        backoff: the first delay between reconnect attempts; it doubles per failed
            attempt, up to *max_backoff*, each delay jittered down by up to half.
        max_connections: publish connections kept at most; a publish beyond them waits
            (within *publish_timeout*) for one to be free.

    Raises:
        ImportError: redis-py is not installed (the ``redis`` extra).
        mjasync.InvalidRequestError: a bad URL or setting.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str = DEFAULT_CHANNEL,
        max_message_bytes: int = MAX_NOTIFICATION_BYTES,
        publish_timeout: float = 0.5,
        connect_timeout: float = 2.0,
        ping_interval: float = 5.0,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        lib = _import_redis()
        super().__init__(max_message_bytes=max_message_bytes)
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            msg = f"url must be a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}"
            raise InvalidRequestError(msg)
        if not channel:
            msg = f"channel must be a non-empty string, got {channel!r}"
            raise InvalidRequestError(msg)
        for name, value in (
            ("publish_timeout", publish_timeout),
            ("connect_timeout", connect_timeout),
            ("ping_interval", ping_interval),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
        ):
            if not 0 < value < float("inf"):
                msg = f"{name} must be a positive number of seconds, got {value!r}"
                raise InvalidRequestError(msg)
        if max_backoff < backoff:
            msg = f"max_backoff ({max_backoff}) must not be below backoff ({backoff})"
            raise InvalidRequestError(msg)
        if max_connections < 1:
            msg = f"max_connections must be an int >= 1, got {max_connections!r}"
            raise InvalidRequestError(msg)
        self.channel = channel
        self.publish_timeout = float(publish_timeout)
        self.connect_timeout = float(connect_timeout)
        self.ping_interval = float(ping_interval)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._url = url
        self._safe_url = redact_url(url)
        self._password = urlsplit(url).password or ""
        self._redis = lib
        try:
            # No retries inside redis-py: a failed publish is dropped (polling covers it)
            # and the subscriber reconnects in its own loop, which backs off and logs.
            # A plain pool behind our own semaphore: redis-py 5.0's BlockingConnectionPool
            # loses a slot on every failed connect and then answers "No connection
            # available" until its timeout, even with the server back.
            self._pool: redis.asyncio.ConnectionPool = lib.asyncio.ConnectionPool.from_url(
                url,
                max_connections=max_connections,
                socket_connect_timeout=self.publish_timeout,
                socket_timeout=self.publish_timeout,
                retry=lib.asyncio.retry.Retry(lib.backoff.NoBackoff(), 0),
            )
        except ValueError as exc:
            msg = f"bad Redis URL {self._safe_url!r}: {self._scrub(str(exc))}"
            raise InvalidRequestError(msg) from None
        self._publisher: redis.asyncio.Redis = lib.asyncio.Redis(connection_pool=self._pool)
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_connections)
        self._publishing = 0
        self._publishes_done: asyncio.Event | None = None
        self._down = False
        self._down_since = 0.0
        self._quiet = False
        self._warned_at: float | None = None

    def __repr__(self) -> str:
        return f"RedisBus({self._safe_url!r}, channel={self.channel!r})"

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, notification: bytes | Mapping[str, Any]) -> bool:
        """PUBLISH the notification on the channel, within ``publish_timeout``."""
        message = self._encode(notification)
        if message is None:
            return False
        if self._closed:
            self._publish_failures += 1
            return False
        self._publishing += 1
        try:
            async with asyncio.timeout(self.publish_timeout), self._slots:
                await self._publisher.publish(self.channel, message)
        except Exception as error:
            # Never into the webhook route: the accepting process already woke its own
            # waiters, and every other process's poller finishes its waits.
            self._publish_failures += 1
            self._went_down(error)
            return False
        finally:
            self._publishing -= 1
            if self._publishing == 0 and self._publishes_done is not None:
                self._publishes_done.set()
        self._published += 1
        self._came_back()
        return True

    # -- subscribing -----------------------------------------------------------------------

    async def start(self, on_message: OnMessage) -> None:
        """Subscribe to the channel; reconnects by itself for as long as the bus is open."""
        self._begin(on_message)
        first_attempt = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._subscribe_forever(first_attempt), name="mjasync-bus"
        )
        await first_attempt.wait()

    async def _subscribe_forever(self, first_attempt: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        subscribed_before = False
        while True:
            client = self._redis.asyncio.Redis.from_url(
                self._url,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=self.connect_timeout,
                socket_keepalive=True,
                retry=self._redis.asyncio.retry.Retry(self._redis.backoff.NoBackoff(), 0),
            )
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await pubsub.subscribe(self.channel)
                    # The confirmation: from here on every PUBLISH reaches this process.
                    while (reply := await pubsub.get_message(timeout=self.connect_timeout)) is None:
                        pass
                if reply.get("type") != "subscribe":
                    msg = f"expected the subscribe confirmation, got {reply.get('type')!r}"
                    raise ConnectionError(msg)
                if subscribed_before:
                    self._reconnects += 1
                subscribed_before = True
                failures = 0
                self._connected = True
                self._came_back()
                first_attempt.set()
                await self._read(pubsub, loop)
            except Exception as error:
                self._went_down(error)
            finally:
                self._connected = False
                first_attempt.set()
                await _finish_shielded(
                    _close_quietly(self.connect_timeout, pubsub.aclose(), client.aclose())
                )
            delay = min(self.max_backoff, self.backoff * 2**failures)
            failures += 1
            await asyncio.sleep(delay * (1 - self._rng.random() / 2))

    async def _read(
        self, pubsub: redis.asyncio.client.PubSub, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Hand every message to `_receive` until the connection fails or goes silent."""
        last_heard = loop.time()
        while True:
            reply = await pubsub.get_message(timeout=self.ping_interval)
            if reply is None:
                if loop.time() - last_heard >= 1.5 * self.ping_interval:
                    msg = f"no answer to PING for {loop.time() - last_heard:.1f} s"
                    raise ConnectionError(msg)
                await pubsub.ping()
                continue
            last_heard = loop.time()
            if reply.get("type") == "message":
                self._receive(reply.get("data"))

    # -- outages ---------------------------------------------------------------------------

    def _went_down(self, error: BaseException) -> None:
        """Log the first failure of an outage, whichever side saw it (publish or subscribe).

        A link that flaps (or publishes that time out under a burst, between ones that
        get through) would log a pair per flap: after one warning, the outages of the
        next `_QUIET_AFTER_WARNING` seconds are logged at DEBUG only.
        """
        if self._down:
            logger.debug("Redis bus at %s still down: %s", self._safe_url, self._describe(error))
            return
        now = asyncio.get_running_loop().time()
        self._down = True
        self._down_since = now
        self._quiet = self._warned_at is not None and now - self._warned_at < _QUIET_AFTER_WARNING
        if self._quiet:
            logger.debug("Redis bus at %s down again: %s", self._safe_url, self._describe(error))
            return
        self._warned_at = now
        logger.warning(
            "Redis bus at %s is unreachable (%s); notifications between processes pause "
            "and polling finishes the waits until it is back",
            self._safe_url,
            self._describe(error),
        )

    def _came_back(self) -> None:
        if not self._down:
            return
        self._down = False
        outage = asyncio.get_running_loop().time() - self._down_since
        log = logger.debug if self._quiet else logger.info
        log("Redis bus at %s is back after %.1f s", self._safe_url, outage)

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, TimeoutError) and not str(error):
            return "TimeoutError: no answer in time"
        return self._scrub(f"{type(error).__name__}: {error}")

    def _scrub(self, text: str) -> str:
        # redis-py's messages name host and port, not the password; this is the backstop.
        return text.replace(self._password, _REDACTED) if self._password else text

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel the subscriber, wait out in-flight publishes, close every connection."""
        if self._closed:
            return
        self._closed = True
        await _finish_shielded(self._shutdown())

    async def _shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Its own cleanup is bounded by connect_timeout; this bound is the backstop
            # that keeps aclose from hanging on a connection that never finishes closing.
            await asyncio.wait([task], timeout=2 * self.connect_timeout)
            if not task.done():
                logger.warning("the Redis bus subscriber did not stop in time; left behind")
            elif not task.cancelled() and task.exception() is not None:
                logger.error("the Redis bus subscriber crashed", exc_info=task.exception())
        if self._publishing:
            # Each is bounded by publish_timeout; closing the pool under them would let
            # one of them open a fresh connection that nobody closes.
            self._publishes_done = asyncio.Event()
            await self._publishes_done.wait()
        await _close_quietly(
            self.connect_timeout, self._publisher.aclose(), self._pool.disconnect()
        )


async def _close_quietly(within: float, *closes: Awaitable[None]) -> None:
    """Await every close in turn, each bounded by *within* seconds.

    A connection that is already broken may fail to close, or never finish closing;
    either way the rest are still closed and the caller is not held up.
    """
    for close in closes:
        try:
            async with asyncio.timeout(within):
                await close
        except Exception as error:
            logger.debug("closing a Redis connection failed: %r", error)


async def _finish_shielded(work: Awaitable[None]) -> None:
    """Run *work* to its end even if the caller is cancelled meanwhile, then re-raise that.

    anyio re-delivers a scope's cancellation on every loop turn, so the wait loops until
    the work is done; the first cancellation is the one raised.
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if cancelled is None:
                cancelled = exc
    if cancelled is not None:
        raise cancelled
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
