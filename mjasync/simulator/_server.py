"""``Simulator``: the simulated proxy served on a real local port, as an async context manager."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ._app import create_app
from ._config import SimulatorConfig
from ._context import SimulatorState, get_state
from ._state import Notification, RequestRecord, SimTask


class Simulator:
    """A midjourney-proxy look-alike listening on ``host:port`` (port 0: any free port).

    ``Simulator(config)`` or ``Simulator(dialect="trueai", time_scale=0.01, ...)``: keyword
    arguments build a `SimulatorConfig`, or override fields of the one given:

    ```python
    async with Simulator(dialect="plus", time_scale=0.01) as sim:
        url = sim.base_url  # "http://127.0.0.1:<port>"
    ```
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        if config is None:
            config = SimulatorConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.host = host
        self.port = port
        self.app = create_app(config)
        self.state: SimulatorState = get_state(self.app)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def start(self) -> None:
        """Start serving; idempotent."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        host, port = address[0], address[1]
        if ":" in host:  # an IPv6 literal needs brackets in a URL
            host = f"[{host}]"
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving, cancel timers and notifyHook deliveries; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash, no ``/mj``)."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running; use 'async with Simulator()'")
        return self._base_url

    @property
    def requests(self) -> collections.Counter[str]:
        """Request counts keyed by route template, e.g. ``"GET /mj/task/{id}/fetch"``."""
        return self.state.requests

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every request, in arrival order."""
        return self.state.request_log

    @property
    def tasks(self) -> dict[str, SimTask]:
        """Live server-side tasks by id."""
        return self.state.tasks

    @property
    def notifications(self) -> list[Notification]:
        """Every attempted notifyHook delivery, in completion order."""
        return self.state.notifications

    @property
    def fault_counts(self) -> collections.Counter[str]:
        """How many times each fault kind played, e.g. ``{"server_error": 3}`` (also
        ``GET /sim/faults``)."""
        return self.state.faults.counts

    @property
    def dropped_notifications(self) -> list[Notification]:
        """Deliveries the ``notify_drop`` fault swallowed (never sent)."""
        return self.state.dropped_notifications

    def task_json(self, task_id: str) -> dict[str, Any]:
        """The JSON ``fetch`` would return for ``task_id`` right now (new-api: its copy)."""
        return self.state.task_json(task_id, self._base_url or "")

    def inject(self, route: str, kind: str, times: int = 1, **params: Any) -> None:
        """Queue a deterministic fault for the next ``times`` requests to ``route``.

        ``route`` is ``"POST /mj/submit/imagine"``, ``"/mj/submit/imagine"`` or a short
        name (``"imagine"``, ``"fetch"``, ``"list-by-condition"``...). See
        `SimulatorState.inject` for the kinds and their parameters.
        """
        self.state.inject(route, kind, times, **params)

    def complete(self, task_id: str) -> SimTask:
        """Finish a task with SUCCESS now (buttons, final image and all)."""
        return self.state.complete(task_id)

    def fail(self, task_id: str, reason: str = "Job action restricted") -> SimTask:
        """Finish a task with FAILURE and ``reason`` now."""
        return self.state.fail(task_id, reason)

    def stall(self, task_id: str) -> SimTask:
        """Freeze a task in its current status forever."""
        return self.state.stall(task_id)

    def reset_counters(self) -> None:
        """Clear ``requests``, ``request_log``, the notification lists and ``fault_counts``."""
        self.state.reset_counters()


async def run_forever(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8080
) -> None:
    """Serve a simulator until cancelled, printing its base URL once it listens."""
    sim = Simulator(config, host=host, port=port)
    await sim.start()
    print(f"mjasync simulator ({sim.config.dialect}) listening on {sim.base_url}", flush=True)
    await sim.serve_forever()
