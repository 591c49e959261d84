"""Waiting benchmark: many concurrent `await_task` calls against the simulator.

    python -m benchmarks.bench_wait --waiters 100,1000,10000

For each waiter count and each mode (poll, webhook) it starts a fresh simulator in a
subprocess (so its CPU is not the client's), submits N imagines, then awaits all N at
once and reports:

* status requests per tick (mean and max) from `Client.poll_stats`;
* client CPU (``time.process_time``) during the waiting phase per task snapshot
  processed: every item of a poll answer plus every webhook body received while
  waiting; also that CPU net of the fixed per-request HTTP cost, which each run
  calibrates before submitting (see benchmarks/README.md);
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
import importlib
import json
import os
import pstats
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import mjasync
from mjasync import _json, simulator

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


_STATM: list[int] = []


def rss_bytes() -> int:
    """The current resident set size (Linux /proc; elsewhere the peak, which only grows)."""
    try:
        if not _STATM:
            _STATM.append(os.open("/proc/self/statm", os.O_RDONLY))
        # One pread on a kept descriptor: the sampler runs 20 times a second while the
        # client is measured, so it must cost next to nothing.
        return int(os.pread(_STATM[0], 200, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE")
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

    def cpu(self) -> float:
        """CPU seconds (user + system) the simulator process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


CALIBRATION_REQUESTS = 300


async def calibrate_out(mj: mjasync.Client) -> float:
    """Client CPU µs of one status request whose answer holds no task."""
    for _ in range(20):  # warm the connection pool
        await mj._fetcher.fetch_batch(["1"])
    before = time.process_time()
    for _ in range(CALIBRATION_REQUESTS):
        await mj._fetcher.fetch_batch(["1"])
    return (time.process_time() - before) / CALIBRATION_REQUESTS * 1e6


async def calibrate_in(port: int) -> float:
    """Client CPU µs of serving one tiny POST sent by another process (100 connections)."""
    count = CALIBRATION_REQUESTS * 4
    args = [sys.executable, __file__, "--post", f"http://127.0.0.1:{port}/calibrate,{count}"]
    before = time.process_time()
    child = await asyncio.create_subprocess_exec(*args)
    # The child's start-up costs this process nothing but a little event-loop idling.
    await child.wait()
    return (time.process_time() - before) / count * 1e6


async def post_many(url: str, count: int) -> None:
    """Subprocess entry for calibrate_in: *count* POSTs over 100 keep-alive connections."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        limit = asyncio.Semaphore(100)

        async def one() -> None:
            async with limit, session.post(url, json={"id": "1", "status": "SUBMITTED"}) as r:
                await r.read()

        await asyncio.gather(*(one() for _ in range(count)))


def start_profile(kind: str | None) -> Callable[[], None]:
    """Start a profiler of the waiting phase; the returned callable stops and prints it."""
    if kind == "pyinstrument":
        import pyinstrument

        sampler = pyinstrument.Profiler(interval=0.0005, async_mode="disabled")
        sampler.start()

        def stop_sampler() -> None:
            sampler.stop()
            print(sampler.output_text(unicode=True, show_all=False), file=sys.stderr)

        return stop_sampler
    if kind:
        profiler = cProfile.Profile()
        profiler.enable()

        def stop() -> None:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)

        return stop
    return lambda: None


async def run_once(waiters: int, mode: str, profile: str | None = None) -> dict[str, Any]:
    server = Server(waiters, notify=mode == "webhook")
    runner = None
    try:
        hook = None
        port = 0
        if mode == "webhook":
            from aiohttp import web

            port = free_port()
            hook = f"http://127.0.0.1:{port}/mj-hook"
        client = mjasync.Client(server.base_url, "bench", poll=POLL, notify_hook=hook)
        arrived: dict[str, float] = {}
        # Webhook bodies received, all of them, counted only while waiting.
        hooks = {"counting": 0, "bodies": 0}
        if mode == "webhook":
            # handle_notification (the any-framework path) so the arrival of each final
            # callback can be timed; webhook_handler does the same work.
            async def hook_route(request: web.Request) -> web.Response:
                body = await request.read()
                now = time.time()
                hooks["bodies"] += hooks["counting"]
                result = await client.handle_notification(body, token=request.query.get("token"))
                if result.task is not None and result.task.is_terminal:
                    arrived.setdefault(result.task.id, now)
                return web.Response(status=result.status)

            async def calibrate_route(request: web.Request) -> web.Response:
                await request.read()
                return web.Response(status=200)

            app = web.Application()
            app.router.add_post("/mj-hook", hook_route)
            app.router.add_post("/calibrate", calibrate_route)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        async with client as mj:
            # The fixed CPU cost of one HTTP request, measured before any task exists:
            # a status request for an id the server does not know (the client's own path,
            # answered with []), and a tiny POST from another process to this app.
            out_us = await calibrate_out(mj)
            in_us = await calibrate_in(port) if mode == "webhook" else 0.0
            # One-time costs are not per snapshot: the poller's task group imports
            # anyio's asyncio backend on first use, so load it now.
            importlib.import_module("anyio._backends._asyncio")
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
            server_cpu_before = server.cpu()
            cpu_before = time.process_time()
            wall_before = time.monotonic()
            hooks["counting"] = 1
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
            stop_profile = start_profile(profile)
            await asyncio.gather(*(wait(s) for s in subs))
            cpu = time.process_time() - cpu_before
            wall = time.monotonic() - wall_before
            hooks["counting"] = 0
            server_cpu = server.cpu() - server_cpu_before
            stop_profile()
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            peak = max(peak, rss_bytes())
            stats = mj.poll_stats
    finally:
        if runner is not None:
            await runner.cleanup()
        server.close()
    processed = stats.snapshots + hooks["bodies"]
    fixed = (stats.status_requests * out_us + hooks["bodies"] * in_us) / 1e6
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
        "hook_bodies": hooks["bodies"],
        "processed": processed,
        "wall_s": wall,
        "cpu_s": cpu,
        "client_cores": cpu / wall,
        "server_cores": server_cpu / wall,
        "cpu_us_per_snapshot": cpu / processed * 1e6 if processed else 0.0,
        "request_out_us": out_us,
        "request_in_us": in_us,
        "http_fixed_s": fixed,
        "net_us_per_snapshot": (cpu - fixed) / processed * 1e6 if processed else 0.0,
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
        "CPU µs/snapshot | HTTP requests out / in | µs per request out / in | "
        "CPU µs/snapshot net of HTTP | client / sim cores | "
        "RSS growth (MB) | RSS KB/waiter | lag p50 / p95 / max (ms) | "
        "hook→return p50 / p95 (ms) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['mode']} | {r['waiters']:,} | {r['per_tick_mean']:.1f} ({r['per_tick_max']}) | "
        f"{-(-r['waiters'] // POLL.batch_size)} | "
        f"{r['processed']:,} | {r['cpu_us_per_snapshot']:.1f} | "
        f"{r['requests']:,} / {r['hook_bodies']:,} | "
        f"{r['request_out_us']:.0f} / {r['request_in_us']:.0f} | "
        f"{r['net_us_per_snapshot']:.1f} | {r['client_cores']:.2f} / {r['server_cores']:.2f} | "
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
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cprofile",
        choices=["cprofile", "pyinstrument"],
        help="profile the waiting phase (cProfile by default, or pyinstrument if installed)",
    )
    parser.add_argument(
        "--json-parser",
        choices=["orjson", "json"],
        help="parse with orjson (the speedups extra) or the stdlib's json "
        "(default: orjson when installed)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--post", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.post:
        url, count = args.post.rsplit(",", 1)
        asyncio.run(post_many(url, int(count)))
        return 0
    if args.json_parser:
        _json.use_json_parser(args.json_parser)
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
    print(f"policy: {POLL}; JSON parser: {_json.json_parser()}")
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
