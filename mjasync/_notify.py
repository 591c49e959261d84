"""The notification side of `Client`: the webhook route, the poller it wakes, the bus.

A notifyHook callback is checked (the token, in `_webhook`), parsed, and handed to the
poller, which decides what it changes; with a ``notify_bus`` it is also published once to
the app's other processes, and the ones they accepted come back through the same path
(never republished). The poller is created here, at the first wait or notification, and
so is a bus started by a client used without ``async with``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Self

from ._base import BaseClient
from ._bus import NotificationBus
from ._poll import Poller
from ._webhook import (
    MAX_NOTIFICATION_BYTES,
    NotificationBody,
    NotificationResult,
    aiohttp_handler,
    parse_notification,
)

__all__ = ["NotifyRoutes"]

logger = logging.getLogger("mjasync")

# How long aclose waits for the bus's pending publishes (RedisBus bounds each by its
# publish_timeout; this bounds a custom bus that does not).
_BUS_CLOSE_WAIT = 5.0


class NotifyRoutes(BaseClient):
    """The notifyHook receiver and the bus of `Client` (a mixin; see `Client`)."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        await self._start_bus()
        return self

    def _get_poller(self) -> Poller:
        self._check_open()
        if self._poller is None:
            self._poller = Poller(
                self._poll, self._fetcher, hooks=self._hooks.url is not None, clock=self._clock
            )
            self._on_close(self._poller.aclose)
            self._start_bus_soon()
        return self._poller

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
        refused = self._hooks.check(token)
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
            woke = self._get_poller().notify(result.task, trust=self._hooks.trust)
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
            self._accept_and_publish, lambda: self._hooks.token, refused=self._refused
        )

    # -- the notification bus between processes (#12) -------------------------------

    @property
    def notify_bus(self) -> NotificationBus | None:
        """The bus given as ``notify_bus=``, or None."""
        return self._bus

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
            bus.note_invalid()

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
