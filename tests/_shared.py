"""What many test modules share: fast policies, a simulator with a client, PNG bytes.

The fixtures built on these live in ``conftest.py``; constants and helpers that a module
uses at import time (in ``parametrize``, as defaults) live here, imported as
``from _shared import ...``. Tweak a value here and every test that waits on the
simulator follows.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from hypothesis import settings

import mjasync
from mjasync.cli import main
from mjasync.simulator import Simulator


def in_ci() -> bool:
    """True under CI=true (or any value but empty, 0, false, no): what CI needs must run."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


# The ``ci`` Hypothesis profile's examples per test (conftest.py registers both profiles).
CI_EXAMPLES = 200

# -- policies ------------------------------------------------------------------------------

# Polling a simulator: milliseconds, not seconds. first_poll: the 0.5 s default exists to
# skip a pointless immediate poll on real servers; the request ceiling must not pace tests.
FAST_POLL = mjasync.PollPolicy(
    interval=0.005, max_interval=0.02, first_poll=0.005, max_requests_per_second=1000
)
# A client that never polls on its own within a test: notifications (or nothing) wake it.
NO_POLL = mjasync.PollPolicy(interval=30, max_interval=30, first_poll=30, webhook_interval=30)
# Retries without the real back-off: three tries a few milliseconds apart.
QUICK_RETRY = mjasync.RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.002)
ONE_TRY = mjasync.RetryPolicy(attempts=1)

# -- the simulator ---------------------------------------------------------------------------

# A simulated minute in 60 ms: for tests that read the simulator's own state.
SIM_FAST: dict[str, Any] = {"time_scale": 0.001}
# The bulk runner's pauses in milliseconds (its defaults are a second and a minute).
BULK_FAST: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.05, "task_timeout": 20.0}
# The CLI's own client polls as fast (its default interval is 2 s).
CLI_FAST = ["--poll-interval", "0.01"]

KEY = "sim-key"
# How each dialect reads the key: the style a client must send it in.
AUTH: dict[str, mjasync.AuthStyle] = {
    "plus": "mj-api-secret",
    "oss": "mj-api-secret",
    "trueai": "authorization",
    "newapi": "bearer",
}


@asynccontextmanager
async def simulated(
    dialect: str = "plus",
    *,
    api_key: str | None = None,
    poll: mjasync.PollPolicy = FAST_POLL,
    retry: mjasync.RetryPolicy | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, mjasync.Client]]:
    """A fast simulator of *dialect* and a client pointed at it, both closed afterwards.

    With *api_key* the simulator requires it and the client sends it the dialect's way.
    """
    config.setdefault("time_scale", 0.001)
    options: dict[str, Any] = {"poll": poll}
    if retry is not None:
        options["retry"] = retry
    if api_key is not None:
        options["auth"] = AUTH[dialect]
    async with (
        Simulator(dialect=dialect, api_key=api_key, **config) as sim,
        mjasync.Client(sim.base_url, api_key, **options) as mj,
    ):
        yield sim, mj


async def sim_reaches(sim: Simulator, task_id: str, statuses: Iterable[str]) -> None:
    """Wait on the simulator's own state (cheap) until the task reaches one of *statuses*."""
    wanted = set(statuses)
    for _ in range(5000):
        if sim.tasks[task_id].status in wanted:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{task_id} stuck in {sim.tasks[task_id].status}")


async def run_cli(*argv: str) -> int:
    """``mjasync.cli.main(argv)`` in a worker thread: the CLI runs its own event loop, so
    the test's servers (a simulator, a fake proxy) keep serving meanwhile."""
    return await anyio.to_thread.run_sync(main, list(argv))


def examples(ci: int) -> int:
    """*ci* examples under the ``ci`` Hypothesis profile, a quarter of them under ``dev``.

    For a property test that needs more (or fewer) examples than the profile's default:
    ``@settings(max_examples=examples(1500))``. conftest.py loads the profile first.
    """
    return max(10, ci * settings.default.max_examples // CI_EXAMPLES)


# -- images ---------------------------------------------------------------------------------


# Data URIs of PNG-signed bytes: enough for servers that check only the header.
PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
PNG_URI_2 = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nother").decode()


def png(width: int = 8, height: int | None = None, *, pixel: bytes = b"\x00") -> bytes:
    """A valid PNG every pixel of which is *pixel*: one byte grey, three bytes RGB."""
    height = width if height is None else height

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    colour = {1: 0, 3: 2}[len(pixel)]
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    rows = (b"\x00" + pixel * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
