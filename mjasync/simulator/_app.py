"""Building the aiohttp application: routes per dialect, and the middleware that counts,
logs, authenticates, rate-limits, answers for missing routes and plays faults around every
handler."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.typedefs import Handler

from . import _newapi
from ._config import SimulatorConfig
from ._context import STATE_KEY, SimulatorState
from ._dialects import auth_failure, spring_error, tomcat_not_found, trueai_role
from ._faults import RequestFaults, Route
from ._routes import FAULTS_KEY, MODE_PREFIXES, RouteSpec, routes_for
from ._state import RequestRecord

_ROUTE_KEY = web.AppKey("mjasync_simulator_routes", dict)
# novicezk WebMvcConfig.addInterceptors: the paths its ApiAuthorizeInterceptor guards.
_OSS_GUARDED = ("/mj/submit/", "/mj/task/", "/mj/account/")


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


def _denied(state: SimulatorState, request: web.Request) -> web.Response | None:
    if state.config.dialect == "newapi":
        return _newapi.auth_failure(state.config, request)
    return auth_failure(state.config, request.headers)


def _rate_limited(state: SimulatorState, request: web.Request) -> web.Response | None:
    # trueai Program.cs runs RateLimitingMiddleware after SimpleAuthMiddleware, on every
    # non-anonymous endpoint (unknown paths included).
    limiter = state.rate_limiter
    if state.config.dialect != "trueai" or not limiter.enabled:
        return None
    scale = state.config.time_scale
    now = asyncio.get_running_loop().time() / scale if scale > 0 else 0.0
    admin = trueai_role(state.config, request.headers) == "ADMIN"
    status = limiter.check(request.remote or "", request.path, now, admin=admin)
    return None if status is None else web.Response(status=status, body=b"")


def _no_route(state: SimulatorState, request: web.Request) -> web.Response:
    """What each server answers for a path (or method) it has no handler for."""
    dialect = state.config.dialect
    exception = getattr(request.match_info, "http_exception", None)
    allowed = getattr(exception, "allowed_methods", None)
    if dialect == "newapi":
        return _newapi.no_route(request)
    if dialect == "trueai":
        # ASP.NET Core endpoint routing: SimpleAuthMiddleware and the rate limiter run
        # first (no endpoint means not anonymous), then an empty 404 or 405.
        refused = _denied(state, request) or _rate_limited(state, request)
        if refused is not None:
            return refused
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return web.Response(status=404)
    if dialect == "oss" and not (request.path == "/mj" or request.path.startswith("/mj/")):
        return tomcat_not_found()
    if allowed:
        # Spring: HttpRequestMethodNotSupportedException is raised while the handler is
        # looked up, before any interceptor runs.
        return spring_error(request, 405, headers={"Allow": ", ".join(sorted(allowed))})
    if request.path.startswith(_OSS_GUARDED):
        # The resource handler behind an unknown path carries the interceptors too.
        refused = _denied(state, request)
        if refused is not None:
            return refused
    # Spring 5.3 ResourceHttpRequestHandler: no resource -> sendError(404) -> /error.
    return spring_error(request, 404)


@web.middleware
async def _simulator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    spec: RouteSpec | None = request.app[_ROUTE_KEY].get(request.match_info.route)
    route: Route | None = spec.route if spec is not None else None
    key = route.key if route is not None else f"{request.method} {request.path}"
    body: object | None = None
    if request.body_exists:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
    state.requests[key] += 1
    record = RequestRecord(
        asyncio.get_running_loop().time(), request.method, key, request.path, body
    )
    log = state.request_log
    index = len(log)
    log.append(record)
    if spec is None or route is None:
        return _no_route(state, request)

    is_asset = route.template.startswith("/sim/")
    plan = state.faults.plan(route, probabilistic=not is_asset)
    played: list[str] = []
    try:
        return await _play(state, request, handler, spec, plan, played)
    finally:
        if played:
            for kind in played:
                state.faults.played(kind)
            # The record names the faults this request met (reset_counters may have
            # emptied the log meanwhile).
            if index < len(log) and log[index] is record:
                log[index] = record._replace(faults=tuple(played))


async def _play(
    state: SimulatorState,
    request: web.Request,
    handler: Handler,
    spec: RouteSpec,
    plan: RequestFaults,
    played: list[str],
) -> web.StreamResponse:
    """Run the handler inside the request's planned faults; ``played`` collects their kinds."""
    if plan.latency > 0:
        if plan.injected_latency:
            played.append("latency")
        await asyncio.sleep(plan.latency)
    if plan.before is not None:
        played.append(plan.before_kind or plan.before)
    if plan.before == "drop":
        return _abort(request)
    if plan.before == "server_error":
        return web.Response(status=plan.status)
    if plan.before == "rate_limit":
        retry_after = f"{plan.retry_after:g}"
        return web.Response(status=429, headers={"Retry-After": retry_after})

    if not spec.public:
        refused = _denied(state, request) or _rate_limited(state, request)
        if refused is not None:
            return refused

    request[FAULTS_KEY] = plan
    response = await handler(request)
    if plan.spike > 0:
        # The work is done (a submit's task exists); only the answer is late.
        played.append("latency_spike")
        await asyncio.sleep(plan.spike)
    if plan.after is not None:
        played.append(plan.after_kind or plan.after)
    if plan.after == "drop":
        return _abort(request)
    if plan.after == "server_error":
        return web.Response(status=plan.status)
    if plan.after == "malformed" and isinstance(response, web.Response):
        raw_body = response.body if isinstance(response.body, bytes) else b""
        return web.Response(body=_truncate(raw_body), status=200, content_type="application/json")
    if (
        plan.image is not None
        and isinstance(response, web.Response)
        and response.status == 200
        and isinstance(response.body, bytes)
    ):
        played.append(plan.image)
        return await _spoil_image(request, response, response.body, plan)
    return response


_EXPIRED_PAGE = (
    "<!DOCTYPE html><html><head><title>This content is no longer available</title></head>"
    "<body><h1>This content is no longer available.</h1></body></html>"
)


async def _spoil_image(
    request: web.Request, response: web.Response, image: bytes, plan: RequestFaults
) -> web.StreamResponse:
    """Play an image fault (``Faults.image_*``) on a 200 image answer."""
    if plan.image == "image_cut":
        # The headers promise every byte; the connection ends halfway through the body.
        cut = web.StreamResponse(
            status=200,
            headers={"Content-Type": response.content_type, "Content-Length": str(len(image))},
        )
        await cut.prepare(request)
        await cut.write(image[: len(image) // 2])
        if request.transport is not None:
            request.transport.abort()
        return cut
    if plan.image == "image_truncated":
        return web.Response(body=image[: len(image) // 2], content_type=response.content_type)
    if plan.image_variant == "jpeg":
        return web.Response(body=image, content_type="image/jpeg")
    return web.Response(text=_EXPIRED_PAGE, content_type="text/html")


def _prefixes(dialect: str, template: str) -> list[str]:
    """The path prefixes a route is also served under."""
    if template.startswith("/sim/") or dialect == "oss":
        # novicezk serves only its /mj servlet context (config/application.yml).
        return [""]
    if dialect == "newapi":
        # new-api router/relay-router.go: the same group under "/:mode/mj", any mode.
        return ["", "/{mode}"]
    # trueai SubmitController.cs / TaskController.cs route attributes (PLUS: aggregators'
    # convention, kept).
    return list(MODE_PREFIXES)


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A bare `aiohttp.web.Application` serving the simulated proxy.

    Serve it with ``aiohttp.test_utils.TestServer`` or an ``AppRunner``; its state
    (tasks, counters, fault injection) is ``get_state(app)``. The scheduler starts with the
    app's ``on_startup`` and stops, with every notifyHook delivery, on ``on_cleanup``.
    """
    config = config or SimulatorConfig()
    state = SimulatorState(config)
    app = web.Application(middlewares=[_simulator_middleware])
    app[STATE_KEY] = state
    route_map: dict[object, RouteSpec] = {}
    for spec in routes_for(config.dialect, config.disabled_routes):
        state.routes.append(spec.route)
        for prefix in _prefixes(config.dialect, spec.route.template):
            registered = app.router.add_route(
                spec.route.method, prefix + spec.route.template, spec.handler
            )
            route_map[registered] = spec
    app[_ROUTE_KEY] = route_map
    app.on_startup.append(state.startup)
    app.on_cleanup.append(state.cleanup)
    return app
