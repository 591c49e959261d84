"""Loopback stand-ins for servers that are not a midjourney-proxy: wrong URLs, dead ports."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

WEB_PAGE = "<!doctype html><html><body>app</body></html>"


@asynccontextmanager
async def static_server(
    status: int, text: str, content_type: str = "text/plain"
) -> AsyncIterator[list[str]]:
    """A server answering every request the same way; yields ``[base URL, *requests]``."""
    log: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        log.append(f"{request.method} {request.path}")
        return web.Response(status=status, text=text, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.append(f"http://127.0.0.1:{port}")
    try:
        yield log
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def webhook_site(handler_for: Callable[[str], Any]) -> AsyncIterator[str]:
    """A real aiohttp app on 127.0.0.1 serving ``POST /mj-hook``; yields that URL.

    The handler is ``handler_for(url)``: the URL is known before the app starts, so a
    client built with ``notify_hook=url`` can serve its own ``webhook_handler`` there.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mj-hook"
    app = web.Application()
    app.router.add_post("/mj-hook", handler_for(url))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield url
    finally:
        await runner.cleanup()
        sock.close()
