"""Pool benchmark: many concurrent submits through one client's connection pool.

    python -m benchmarks.bench_pool [--calls 200] [--delay 0.5] [--timeout 1.0]
                                    [--limit-per-host N] [--pool-timeout S]

An in-process aiohttp server answers every ``/mj/submit/imagine`` after ``--delay``
seconds; ``--calls`` concurrent ``imagine()`` calls share one `mjasync.Client` with
``timeout=--timeout``. The server records each prompt it received, so every failure is
sorted into "reached the server" (a task the caller was told had failed: paid for, and
unknown to the caller) and "never reached it" (safe to resend). It prints:

* succeeded / RequestTimeoutError / ConnectError / other errors;
* requests that reached the server, and how many prompts arrived more than once (a
  submit sent twice would pay twice);
* failures that had reached the server, and failures that never did;
* wall time.

``--limit-per-host`` sets the pool size (the transport's default otherwise) and
``--pool-timeout`` the bound on waiting for a free connection (only on versions that
have it). Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import inspect
import socket
import time
from typing import Any

from aiohttp import web

import mjasync


async def _serve(delay: float, received: collections.Counter[str]) -> tuple[web.AppRunner, str]:
    async def imagine(request: web.Request) -> web.Response:
        body = await request.json()
        received[body["prompt"]] += 1
        await asyncio.sleep(delay)
        task_id = f"17000000{len(received):08d}"
        return web.json_response({"code": 1, "description": "提交成功", "result": task_id})

    app = web.Application()
    app.router.add_post("/mj/submit/imagine", imagine)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, f"http://127.0.0.1:{port}"


async def run(
    calls: int, delay: float, timeout: float, limit_per_host: int | None, pool_timeout: float | None
) -> dict[str, Any]:
    """Run the scenario once and return the counts."""
    received: collections.Counter[str] = collections.Counter()
    runner, base_url = await _serve(delay, received)
    options: dict[str, Any] = {}
    transport_params = inspect.signature(mjasync.AiohttpTransport).parameters
    if limit_per_host is not None:
        options["limit_per_host"] = limit_per_host
    if pool_timeout is not None and "pool_timeout" in transport_params:
        options["pool_timeout"] = pool_timeout
    transport = mjasync.AiohttpTransport(timeout=timeout, **options)
    outcomes: dict[str, str] = {}
    try:
        async with mjasync.Client(
            base_url, "bench-key", transport=transport, timeout=timeout
        ) as mj:

            async def one(prompt: str) -> None:
                try:
                    await mj.imagine(prompt)
                except mjasync.RequestTimeoutError:
                    outcomes[prompt] = "RequestTimeoutError"
                except mjasync.ConnectError:
                    outcomes[prompt] = "ConnectError"
                except mjasync.MJError as error:
                    outcomes[prompt] = type(error).__name__
                else:
                    outcomes[prompt] = "ok"

            started = time.perf_counter()
            await asyncio.gather(*(one(f"prompt {i}") for i in range(calls)))
            wall = time.perf_counter() - started
            requests_sent = mj.requests_sent
        # Let handlers still sleeping on the server record their prompt before counting.
        await asyncio.sleep(delay + 0.1)
    finally:
        await runner.cleanup()
    failed = [prompt for prompt, outcome in outcomes.items() if outcome != "ok"]
    return {
        "calls": calls,
        "succeeded": sum(1 for outcome in outcomes.values() if outcome == "ok"),
        "RequestTimeoutError": sum(1 for o in outcomes.values() if o == "RequestTimeoutError"),
        "ConnectError": sum(1 for o in outcomes.values() if o == "ConnectError"),
        "other errors": sum(
            1 for o in outcomes.values() if o not in {"ok", "RequestTimeoutError", "ConnectError"}
        ),
        "attempts (Client.requests_sent)": requests_sent,
        "prompts that reached the server": len(received),
        "prompts received twice or more": sum(1 for n in received.values() if n > 1),
        "failures that had reached the server (paid, told failed)": sum(
            1 for prompt in failed if received[prompt]
        ),
        "failures that never reached the server": sum(
            1 for prompt in failed if not received[prompt]
        ),
        "wall time (s)": round(wall, 2),
    }


def main() -> None:
    """Parse the arguments, run once, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.5, help="server seconds per submit")
    parser.add_argument("--timeout", type=float, default=1.0, help="Client(timeout=...)")
    parser.add_argument("--limit-per-host", type=int, default=None)
    parser.add_argument("--pool-timeout", type=float, default=None)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.calls, args.delay, args.timeout, args.limit_per_host, args.pool_timeout)
    )
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
