"""Shared fixtures: anyio pinned to asyncio (aiohttp runs only there), a private Redis, a
fast simulator; and the Hypothesis profiles.

Constants and helpers used at import time (fast policies, ``simulated()``, ``png()``,
``run_cli()``) are in ``_shared.py``.

Hypothesis runs the ``dev`` profile (50 examples a test) unless ``HYPOTHESIS_PROFILE``
names one or ``CI`` is set, which selects ``ci`` (200, derandomized so a CI failure
replays the same way).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _redis import RedisServer, free_port, redis_server_exe
from _shared import CI_EXAMPLES
from hypothesis import settings

from mjasync.simulator import Simulator

settings.register_profile(
    "ci", max_examples=CI_EXAMPLES, deadline=None, derandomize=True, print_blob=True
)
settings.register_profile("dev", max_examples=CI_EXAMPLES // 4, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """aiohttp only runs on asyncio; the plugin's default would add trio when installed."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_shared_notify_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's MJ_NOTIFY_TOKEN must not leak into clients that expect their own."""
    monkeypatch.delenv("MJ_NOTIFY_TOKEN", raising=False)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A fast PLUS simulator on the test's loop: a simulated minute in 0.06 s."""
    async with Simulator(dialect="plus", time_scale=0.002, seed=4) as server:
        yield server


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
