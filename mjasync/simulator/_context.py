"""The per-app simulator state: tasks, counters, faults, uploads and notifyHook delivery."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from typing import Any

import aiohttp
from aiohttp import web

from ._config import SimulatorConfig
from ._dialects import task_json
from ._engine import Engine
from ._faults import FaultInjector, Route
from ._limits import IpRateLimiter
from ._newapi_relay import NewApiRelay
from ._state import IdFactory, Notification, RequestRecord, SimTask

log = logging.getLogger("mjasync.simulator")


class SimulatorState:
    """Everything one simulated server knows; shared by its handlers and `Simulator`.

    Reach it from an app built by `create_app` with ``app[STATE_KEY]`` (or
    `get_state`), e.g. when serving the app through ``aiohttp.test_utils.TestServer``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # Separate streams so that turning a fault on does not change generated ids.
        self.rng = random.Random(f"{config.seed}:values")
        self.ids = IdFactory(self.rng)
        self.faults = FaultInjector(
            config.faults, random.Random(f"{config.seed}:faults"), config.time_scale
        )
        self.engine = Engine(config, self.ids, self._task_changed)
        self.instance_id = self.ids.digits(19)
        self.routes: list[Route] = []
        self.requests: collections.Counter[str] = collections.Counter()
        self.request_log: list[RequestRecord] = []
        self.notifications: list[Notification] = []
        self.dropped_notifications: list[Notification] = []
        self.uploads: dict[str, tuple[bytes, str]] = {}
        # new-api's own copy of each relayed task (dialect "newapi" only).
        self.newapi = NewApiRelay(config, self.engine.tasks)
        self.rate_limiter = IpRateLimiter(config)
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- inspection ------------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, SimTask]:
        """Live tasks by id (the engine's own dict: mutations show up at once)."""
        return self.engine.tasks

    def task_json(self, task_id: str, origin: str = "") -> dict[str, Any]:
        """What ``fetch`` would return for ``task_id`` right now.

        new-api answers from its own, lagging copy (``KeyError`` for an id it never
        relayed); ``origin`` (``http://host:port``) prefixes its ``/mj/image/{id}`` links.
        """
        if self.config.dialect == "newapi":
            self.newapi_read()
            return self.newapi.view(self.newapi.records[task_id], origin)
        return task_json(self.tasks[task_id], self.config)

    def newapi_read(self) -> None:
        """Before new-api serves a read: with no sync interval its copy never lags."""
        if self.config.scaled(self.config.newapi_sync_interval) <= 0:
            self.newapi.sync()

    def reset_counters(self) -> None:
        """Clear ``requests``, ``request_log``, the notification lists and the fault counts."""
        self.requests.clear()
        self.request_log.clear()
        self.notifications.clear()
        self.dropped_notifications.clear()
        self.faults.counts.clear()

    def inject(self, route: str, kind: str, times: int = 1, **params: Any) -> None:
        """Queue a deterministic fault for the next ``times`` requests to ``route``.

        Kinds: ``server_error`` (``status=500``), ``rate_limit`` (``retry_after=``),
        ``drop``, ``malformed``, ``submit_fault_before`` / ``submit_fault_after``
        (``drop=True`` aborts the connection, else ``status=500``), ``latency``
        (``seconds=`` simulated, scaled by ``time_scale``, or ``real_seconds=``),
        ``task_failure`` (``reason=``) and ``stuck`` for the task the request creates,
        ``latency_spike`` (``seconds=`` real, default ``Faults.spike_seconds``: the answer
        is held after the handler ran), and on an image route ``image_cut``,
        ``image_truncated`` and ``image_wrong_type`` (``variant="html"`` or ``"jpeg"``).
        """
        if not any(r.matches(route) for r in self.routes):
            known = sorted({r.key for r in self.routes})
            raise ValueError(f"no route matches {route!r}; routes are {known}")
        self.faults.inject(route, kind, times, params)

    def complete(self, task_id: str) -> SimTask:
        """Finish ``task_id`` with SUCCESS now."""
        return self.engine.complete(task_id)

    def fail(self, task_id: str, reason: str = "Job action restricted") -> SimTask:
        """Finish ``task_id`` with FAILURE and ``reason`` now."""
        return self.engine.fail(task_id, reason)

    def stall(self, task_id: str) -> SimTask:
        """Freeze ``task_id`` in its current status forever."""
        return self.engine.stall(task_id)

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self, app: web.Application) -> None:
        """aiohttp ``on_startup``: start the scheduler and the notifyHook session."""
        self.engine.start(asyncio.get_running_loop())
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        interval = self.config.scaled(self.config.newapi_sync_interval)
        if self.config.dialect == "newapi" and interval > 0:
            self._spawn(self._newapi_sync_loop(interval))

    async def _newapi_sync_loop(self, interval: float) -> None:
        # new-api controller/midjourney.go UpdateMidjourneyTaskBulk: sleep 15 s, then refresh
        # every unfinished task from the upstream, forever.
        while True:
            await asyncio.sleep(interval)
            self.newapi.sync()

    async def cleanup(self, app: web.Application) -> None:
        """aiohttp ``on_cleanup``: stop the scheduler, cancel deliveries, close the session."""
        self.engine.stop()
        pending = list(self._background)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- notifyHook ------------------------------------------------------------------------

    def _task_changed(self, task: SimTask) -> None:
        # new-api forwards notifyHook only with MjNotifyEnabled (the task has no hook
        # otherwise); the upstream then calls it with its own task JSON, PLUS-like here.
        if not task.notify_hook or not self.config.notify or self._session is None:
            return
        body = task_json(task, self.config)
        drop, duplicate, reorder = self.faults.notify_plan()
        if drop:
            self.dropped_notifications.append(Notification(task.notify_hook, body, False))
            return
        delay = 0.0
        if reorder:
            # Late enough to land after the next one or two updates of the same task.
            delay = self.config.scaled(self.config.step_delay) * (1.0 + self.rng.random())
        for _ in range(2 if duplicate else 1):
            self._spawn(self._deliver(task.notify_hook, body, delay))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver(self, url: str, body: dict[str, Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        session = self._session
        if session is None:
            return
        ok = False
        try:
            async with session.post(url, json=body) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # One attempt, no retries: exactly what the proxies do with a failing hook.
            log.debug("notifyHook %s failed: %r", url, exc)
        self.notifications.append(Notification(url, body, ok))


STATE_KEY = web.AppKey("mjasync_simulator_state", SimulatorState)


def get_state(app: web.Application) -> SimulatorState:
    """The `SimulatorState` behind an app made by `create_app`."""
    return app[STATE_KEY]
