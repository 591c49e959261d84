"""Waiting benchmark: many concurrent `await_task` calls against the simulator.

    python -m benchmarks.bench_wait --waiters 100,1000,10000

For each waiter count and each mode (poll, webhook) it starts a fresh simulator in a
subprocess (so its CPU is not the client's), submits N imagines, then awaits all N at
once and reports:

* status requests per tick (mean and max) from `Client.poll_stats`;
* client CPU (``time.process_time``) during the waiting phase per task snapshot
  processed (polled snapshots plus notifications);
* RSS growth per waiter: peak RSS while waiting minus RSS before, divided by N;
* completion lag: ``finishTime`` of the task on the server to `await_task` returning,
  p50 / p95 / max, in milliseconds.

The webhook mode runs an aiohttp app with ``mj.webhook_handler`` in this process (its
CPU counts as the client's) and confirms each final notification with one fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import mjasync
from mjasync import simulator

POLL = mjasync.PollPolicy(
    interval=0.5,
    max_interval=1.0,
    first_poll=0.5,
    batch_size=100,
    max_requests_per_second=1000,
)
SUBMIT_CONCURRENCY = 200
# Submits are spread over this many seconds so tasks finish over a few seconds, not all
# in the same millisecond (the simulator's lifecycle is deterministic).
SUBMIT_WINDOW = 3.0


def rss_bytes() -> int:
    """The current resident set size (Linux /proc; elsewhere the peak, which only grows)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(config_json: str) -> None:
    """Subprocess entry: run a simulator with this config until killed."""
    options = json.loads(config_json)
    port = options.pop("port")
    config = simulator.SimulatorConfig(**options)
    asyncio.run(simulator.run_forever(config, "127.0.0.1", port))


class Server:
    """A simulator in a child process, so the numbers below are the client's alone."""

    def __init__(self, waiters: int, notify: bool) -> None:
        self.port = free_port()
        # Each task lives ~7.5 s, longer than the submit window, so every wait starts
        # before its task finishes; at a 0.5 s interval that is ~10 polls per task,
        # the ratio of a real 60 s job polled every few seconds.
        step = 1.5
        config = {
            "port": self.port,
            "dialect": "plus",
            "slots": waiters,
            "queue_size": waiters,
            "time_scale": 1.0,
            "queue_delay": 0.5,
            "start_delay": 0.5,
            "progress_steps": 4,
            "step_delay": step,
            "notify": notify,
            "image_size": 8,
        }
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", json.dumps(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening" not in line:
            self.close()
            msg = f"the simulator did not start: {line!r}"
            raise RuntimeError(msg)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def run_once(waiters: int, mode: str, profile: bool = False) -> dict[str, Any]:
    server = Server(waiters, notify=mode == "webhook")
    runner = None
    try:
        hook = None
        if mode == "webhook":
            from aiohttp import web

            port = free_port()
            hook = f"http://127.0.0.1:{port}/mj-hook"
        client = mjasync.Client(server.base_url, "bench", poll=POLL, notify_hook=hook)
        arrived: dict[str, float] = {}
        if mode == "webhook":
            # handle_notification (the any-framework path) so the arrival of each final
            # callback can be timed; webhook_handler does the same work.
            async def hook_route(request: web.Request) -> web.Response:
                body = await request.read()
                now = time.time()
                result = await client.handle_notification(body, token=request.query.get("token"))
                if result.task is not None and result.task.is_terminal:
                    arrived.setdefault(result.task.id, now)
                return web.Response(status=result.status)

            app = web.Application()
            app.router.add_post("/mj-hook", hook_route)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        async with client as mj:
            limit = asyncio.Semaphore(SUBMIT_CONCURRENCY)

            started = time.monotonic()

            async def submit(i: int) -> mjasync.Submission:
                await asyncio.sleep(
                    max(0.0, started + SUBMIT_WINDOW * i / waiters - time.monotonic())
                )
                async with limit:
                    return await mj.imagine(f"benchmark fox {i}")

            subs = await asyncio.gather(*(submit(i) for i in range(waiters)))
            submit_seconds = time.monotonic() - started

            gc.collect()
            rss_before = rss_bytes()
            peak = rss_before
            cpu_before = time.process_time()
            wait_started = time.time()
            lags: list[float] = []
            client_lags: list[float] = []

            async def wait(sub: mjasync.Submission) -> None:
                task = await mj.await_task(sub, timeout=300)
                now = time.time()
                assert task.finish_time is not None
                finished = task.finish_time.timestamp()
                if finished >= wait_started:
                    lags.append((now - finished) * 1000)
                    if task.id in arrived:
                        client_lags.append((now - arrived[task.id]) * 1000)

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_bytes())
                    await asyncio.sleep(0.05)

            sampler = asyncio.ensure_future(sample())
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()
            await asyncio.gather(*(wait(s) for s in subs))
            cpu = time.process_time() - cpu_before
            if profiler is not None:
                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            peak = max(peak, rss_bytes())
            stats = mj.poll_stats
    finally:
        if runner is not None:
            await runner.cleanup()
        server.close()
    processed = stats.snapshots + stats.notifications
    lags.sort()
    client_lags.sort()
    return {
        "mode": mode,
        "waiters": waiters,
        "submit_s": submit_seconds,
        "ticks": stats.ticks,
        "requests": stats.status_requests,
        "per_tick_mean": stats.status_requests / stats.ticks if stats.ticks else 0.0,
        "per_tick_max": stats.max_requests_per_tick,
        "snapshots": stats.snapshots,
        "notifications": stats.notifications,
        "cpu_s": cpu,
        "cpu_us_per_snapshot": cpu / processed * 1e6 if processed else 0.0,
        "rss_mb": (peak - rss_before) / 2**20,
        "rss_kb_per_waiter": (peak - rss_before) / waiters / 1024,
        "lag_n": len(lags),
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p95": lags[int(len(lags) * 0.95)] if lags else float("nan"),
        "lag_max": lags[-1] if lags else float("nan"),
        "client_lag_p50": statistics.median(client_lags) if client_lags else float("nan"),
        "client_lag_p95": (
            client_lags[int(len(client_lags) * 0.95)] if client_lags else float("nan")
        ),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| mode | waiters | req/tick mean (max) | ceil(N/batch) | snapshots | "
        "CPU µs/snapshot | RSS growth (MB) | RSS KB/waiter | lag p50 / p95 / max (ms) | "
        "hook→return p50 / p95 (ms) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['mode']} | {r['waiters']:,} | {r['per_tick_mean']:.1f} ({r['per_tick_max']}) | "
        f"{-(-r['waiters'] // POLL.batch_size)} | "
        f"{r['snapshots'] + r['notifications']:,} | {r['cpu_us_per_snapshot']:.1f} | "
        f"{r['rss_mb']:.1f} | {r['rss_kb_per_waiter']:.2f} | "
        f"{r['lag_p50']:.1f} / {r['lag_p95']:.1f} / {r['lag_max']:.1f} | "
        + (
            f"{r['client_lag_p50']:.1f} / {r['client_lag_p95']:.1f} |"
            if r["mode"] == "webhook"
            else "– |"
        )
        for r in rows
    ]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_wait")
    parser.add_argument("--waiters", default="100,1000,10000", help="comma-separated counts")
    parser.add_argument("--modes", default="poll,webhook", help="poll, webhook or both")
    parser.add_argument("--json", action="store_true", help="print raw results as JSON too")
    parser.add_argument("--profile", action="store_true", help="cProfile the waiting phase")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    rows = []
    for count in (int(n) for n in args.waiters.split(",")):
        for mode in args.modes.split(","):
            row = asyncio.run(run_once(count, mode, args.profile))
            rows.append(row)
            print(
                f"{mode:8} {count:>6,} waiters: {row['cpu_us_per_snapshot']:.1f} µs/snapshot, "
                f"{row['rss_mb']:.1f} MB, lag p50 {row['lag_p50']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    print(f"policy: {POLL}")
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
