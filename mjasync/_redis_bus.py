"""`RedisBus`: the notification bus on Redis pub/sub, between an app's worker processes.

The envelope, the interface and the one-process `LocalBus` are in `_bus`. redis-py is
imported only when a `RedisBus` is created, so ``import mjasync`` never needs it. A lost
subscriber reconnects with the one backoff formula (`_policy.backoff`); a publish that
cannot reach Redis in time is counted and dropped: polling stays authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._bus import DEFAULT_CHANNEL, NotificationBus, OnMessage
from ._errors import InvalidRequestError
from ._policy import backoff
from ._webhook import MAX_NOTIFICATION_BYTES

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client

__all__ = ["RedisBus", "redact_url"]

logger = logging.getLogger("mjasync.bus")

_REDACTED = "***"
# After an outage warning, further outages within this many seconds log at DEBUG only.
_QUIET_AFTER_WARNING = 60.0


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
        message = self._outgoing(notification)
        if message is None:
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
            failures += 1
            await asyncio.sleep(
                backoff(failures, base=self.backoff, cap=self.max_backoff, rng=self._rng)
            )

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
