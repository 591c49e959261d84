"""Shared fixtures: anyio pinned to asyncio (aiohttp runs only there), a private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis import RedisServer, free_port, redis_server_exe


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """aiohttp only runs on asyncio; the plugin's default would add trio when installed."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_shared_notify_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's MJ_NOTIFY_TOKEN must not leak into clients that expect their own."""
    monkeypatch.delenv("MJ_NOTIFY_TOKEN", raising=False)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test; killed at teardown, even when thawed mid-test."""
    server = RedisServer(redis_server_exe(), free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.thaw()
        server.kill()
