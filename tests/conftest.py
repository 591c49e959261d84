"""Shared fixtures: anyio pinned to asyncio (aiohttp runs only there)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """aiohttp only runs on asyncio; the plugin's default would add trio when installed."""
    return "asyncio"
