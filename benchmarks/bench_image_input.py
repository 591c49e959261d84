"""Bounded reads of image inputs: how much an endless image URL costs the client.

    python -m benchmarks.bench_image_input [--server-limit-mib 256]

An in-process aiohttp server answers ``GET /endless`` with a PNG signature followed by
zeros, chunked, until the client goes away or ``--server-limit-mib`` is reached (the
bound that keeps the run finite). The client is asked to ``upload()`` that URL, a route
that must download it, with ``max_image_bytes`` at the default (10 MiB) and at 2 MiB.
Each case runs in a fresh interpreter and reports the bytes the server managed to
write, the client's tracemalloc peak, its peak RSS growth and the wall time until the
refusal. Without a bounded read the client buffers everything the server sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import subprocess
import sys
import time
import tracemalloc

from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync

MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n"


async def run_case(cap: int | None, server_limit: int) -> dict[str, float]:
    """One refusal of an endless image; the numbers of this process."""
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = bytes(64 * 1024)
        try:
            await response.write(PNG + chunk[len(PNG) :])
            sent += len(chunk)
            while sent < server_limit:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/endless", endless)
    options = {} if cap is None else {"max_image_bytes": cap}
    async with TestServer(app) as server:
        url = str(server.make_url("/endless"))
        async with mjasync.Client(
            str(server.make_url("/")), "k", retry=mjasync.RetryPolicy(attempts=1), **options
        ) as mj:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            started = time.perf_counter()
            outcome = "accepted"
            try:
                await mj.upload([url])
            except mjasync.MJError as error:
                outcome = type(error).__name__
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "outcome": outcome,  # type: ignore[dict-item]
        "sent_mib": sent / MiB,
        "peak_mib": peak / MiB,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "seconds": elapsed,
    }


def main() -> None:
    """Run each case in a child interpreter and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-limit-mib", type=int, default=256)
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = args.server_limit_mib * MiB
    if args.case is not None:
        cap = None if args.case == 0 else args.case
        print(json.dumps(asyncio.run(run_case(cap, limit))))
        return
    print(
        f"mjasync {mjasync.__version__}, Python {platform.python_version()}, "
        f"server limit {args.server_limit_mib} MiB"
    )
    print()
    columns = ("server sent MiB", "tracemalloc peak MiB", "RSS growth MiB", "s")
    print(f"| max_image_bytes | outcome | {' | '.join(columns)} |")
    print("|---|---|---:|---:|---:|---:|")
    for label, case in (("default (10 MiB)", 0), ("2 MiB", 2 * MiB)):
        command = [sys.executable, "-m", "benchmarks.bench_image_input"]
        command += ["--case", str(case), "--server-limit-mib", str(args.server_limit_mib)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
        print(
            f"| {label} | {result['outcome']} | {result['sent_mib']:.1f} | "
            f"{result['peak_mib']:.1f} | {result['rss_growth_mib']:.1f} | "
            f"{result['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
