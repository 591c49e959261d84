"""Building the aiohttp application: routes per dialect, and the middleware that counts,
logs, authenticates and plays faults around every handler."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.typedefs import Handler

from ._config import SimulatorConfig
from ._context import STATE_KEY, SimulatorState
from ._dialects import auth_failure
from ._faults import Route
from ._routes import FAULTS_KEY, MODE_PREFIXES, routes_for
from ._state import RequestRecord

_ROUTE_KEY = web.AppKey("mjasync_simulator_routes", dict)


def _abort(request: web.Request) -> web.Response:
    """Close the connection with no response at all; the client sees a disconnect."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def _truncate(body: bytes) -> bytes:
    """Half of a JSON document is never valid JSON (its brackets cannot be balanced)."""
    if len(body) < 4:
        return b'{"code": 1, "descr'
    return body[: len(body) // 2]


@web.middleware
async def _simulator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    route: Route | None = request.app[_ROUTE_KEY].get(request.match_info.route)
    key = route.key if route is not None else f"{request.method} {request.path}"
    body: object | None = None
    if request.body_exists:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
    state.requests[key] += 1
    state.request_log.append(
        RequestRecord(asyncio.get_running_loop().time(), request.method, key, request.path, body)
    )
    if route is None:
        return await handler(request)

    is_asset = route.template.startswith("/sim/")
    plan = state.faults.plan(route, probabilistic=not is_asset)
    if plan.latency > 0:
        await asyncio.sleep(plan.latency)
    if plan.before == "drop":
        return _abort(request)
    if plan.before == "server_error":
        return web.Response(status=plan.status)
    if plan.before == "rate_limit":
        retry_after = f"{plan.retry_after:g}"
        return web.Response(status=429, headers={"Retry-After": retry_after})

    if not is_asset:
        denied = auth_failure(state.config.dialect, state.config.api_key, request.headers)
        if denied is not None:
            return denied

    request[FAULTS_KEY] = plan
    response = await handler(request)
    if plan.after == "drop":
        return _abort(request)
    if plan.after == "server_error":
        return web.Response(status=plan.status)
    if plan.after == "malformed" and isinstance(response, web.Response):
        raw_body = response.body if isinstance(response.body, bytes) else b""
        return web.Response(body=_truncate(raw_body), status=200, content_type="application/json")
    return response


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A bare :class:`aiohttp.web.Application` serving the simulated proxy.

    Serve it with ``aiohttp.test_utils.TestServer`` or an ``AppRunner``; its state
    (tasks, counters, fault injection) is ``get_state(app)``. The scheduler starts with the
    app's ``on_startup`` and stops, with every notifyHook delivery, on ``on_cleanup``.
    """
    config = config or SimulatorConfig()
    state = SimulatorState(config)
    app = web.Application(middlewares=[_simulator_middleware])
    app[STATE_KEY] = state
    route_map: dict[object, Route] = {}
    for spec in routes_for(config.dialect, config.disabled_routes):
        state.routes.append(spec.route)
        prefixes = [""] if spec.route.template.startswith("/sim/") else list(MODE_PREFIXES)
        for prefix in prefixes:
            registered = app.router.add_route(
                spec.route.method, prefix + spec.route.template, spec.handler
            )
            route_map[registered] = spec.route
    app[_ROUTE_KEY] = route_map
    app.on_startup.append(state.startup)
    app.on_cleanup.append(state.cleanup)
    return app
