"""Completion lag across uvicorn workers, with the Redis notification bus and without (#12).

    python -m benchmarks.bench_workers [--tasks 200] [--runs 4-bus,4-poll,1-bus]
                                       [--repeat 1] [--time-scale 1.0] [--json]

Each run starts, in their own processes, a fresh redis-server on a free loopback port, the
simulator (notifyHook calls on; bench_lag's job timing: ~30 s jobs, ±30 %, a queue wait,
Midjourney's uneven progress steps) and ``examples/fastapi_workers`` under ``uvicorn
--workers N`` with mjasync's default `PollPolicy`. Runs:

* ``4-bus``: 4 workers sharing a `RedisBus`;
* ``4-poll``: 4 workers without a bus (``REDIS_URL=off``): a callback that lands on
  another worker than the waiter's is accepted there and helps no one, so that wait ends
  at the waiter's next poll (``webhook_interval``, 15 s, once callbacks have been seen);
* ``1-bus``: one worker, where every callback reaches the waiter's process.

The benchmark submits N imagines through the app spread over 3 s and waits on each
through the app (``GET /tasks/{id}?wait=600``); every request opens a new connection, so
it lands on any worker, like behind a load balancer. Lag is the moment the waiting
worker's ``await_task`` returned (its wall clock) minus the server's ``finishTime``: p50,
p95 and max, over all tasks, and over those whose final callback reached another worker
than the waiter's ("elsewhere"). Also: the share of such tasks, the bus's publish
failures and the status requests the workers sent per task (from each worker's
``/worker`` counters).

``--time-scale`` runs the simulated jobs faster but not the client's polling, which
stays real-time: use it to try the benchmark, not to quote numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.bench_lag import JOB, SEED, SUBMIT_WINDOW, percentile
from benchmarks.bench_wait import free_port

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("4-bus", "4-poll", "1-bus")
STARTUP = 60.0
WAIT = 600


class Deployment:
    """redis-server, the simulator and the example app under uvicorn, each a process."""

    def __init__(self, workers: int, bus: bool, tasks: int, time_scale: float, seed: int):
        self.workers = workers
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        redis_port, sim_port, app_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{app_port}"
        exe = shutil.which("redis-server")
        if exe is None:
            msg = "redis-server is not installed (apt-get install redis-server)"
            raise SystemExit(msg)
        self.redis = self._start(
            "redis",
            [exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
        )  # fmt: skip
        job = [
            "--queue-delay", str(JOB["queue_delay"]),
            "--start-delay", str(JOB["start_delay"]),
            "--step-delay", str(JOB["step_delay"]),
            "--progress-percents", ",".join(map(str, JOB["progress_percents"])),
            "--duration-jitter", str(JOB["duration_jitter"]),
            "--step-jitter", str(JOB["step_jitter"]),
        ]  # fmt: skip
        self.sim_log = self.workdir / "simulator.log"
        self._start(
            "simulator",
            [sys.executable, "-m", "mjasync.simulator", "--port", str(sim_port),
             "--time-scale", str(time_scale), "--seed", str(seed),
             "--slots", str(tasks), "--queue-size", str(tasks), *job],
        )  # fmt: skip
        env = {
            **os.environ,
            "MJ_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "MJ_API_KEY": "bench",
            "MJ_NOTIFY_TOKEN": secrets.token_urlsafe(32),
            "PUBLIC_URL": self.url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0" if bus else "off",
        }
        env.pop("MJ_POLL_SECONDS", None)
        self.app_log = self.workdir / "uvicorn.log"
        self._start(
            "uvicorn",
            [sys.executable, "-m", "uvicorn", "examples.fastapi_workers.app:app",
             "--workers", str(workers), "--host", "127.0.0.1", "--port", str(app_port),
             "--no-access-log"],
            env=env,
        )  # fmt: skip

    def _start(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
            )
        self.processes.append(process)
        return process

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP
        while not (
            self.app_log.read_text().count("Application startup complete.") == self.workers
            and "listening on" in self.sim_log.read_text()
        ):
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                self.close()
                msg = f"the deployment did not start; logs in {self.workdir}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def every_worker(http: aiohttp.ClientSession, url: str, workers: int) -> dict[int, Any]:
    """/worker from each process (new connections until each answered; bounded)."""
    seen: dict[int, Any] = {}
    for _ in range(100 * workers):
        async with http.get(f"{url}/worker") as response:
            stats = await response.json()
        seen[stats["pid"]] = stats
        if len(seen) == workers:
            break
    return seen


async def measure(deployment: Deployment, tasks: int, time_scale: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    timeout = aiohttp.ClientTimeout(total=WAIT + 60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.monotonic()
        window = SUBMIT_WINDOW * time_scale

        async def one(i: int) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, started + window * i / tasks - time.monotonic()))
            body = {"prompt": f"benchmark lighthouse {i}"}
            async with http.post(f"{deployment.url}/imagine", json=body) as response:
                task_id = (await response.json())["task_id"]
            params = {"wait": str(WAIT)}
            async with http.get(f"{deployment.url}/tasks/{task_id}", params=params) as response:
                answer: dict[str, Any] = await response.json()
                return answer

        answers = await asyncio.gather(*(one(i) for i in range(tasks)))
        stats = await every_worker(http, deployment.url, deployment.workers)

    def lags(rows: list[dict[str, Any]]) -> list[float]:
        return sorted(
            (a["worker"]["learned_at"] - a["finish_time"]) * 1000
            for a in rows
            if a["finish_time"] is not None and not a["worker"]["timed_out"]
        )

    elsewhere = [a for a in answers if not a["worker"]["final_callback_here"]]
    buses = [s["bus"] or {} for s in stats.values()]
    result: dict[str, Any] = {
        "tasks": tasks,
        "success": sum(a["status"] == "SUCCESS" for a in answers),
        "elsewhere": len(elsewhere),
        "workers_seen": len(stats),
        # How the proxy's callbacks spread over the workers, most first.
        "callbacks_by_worker": sorted(
            (s["webhook"]["accepted"] for s in stats.values()), reverse=True
        ),
        "status_requests": sum(s["poll"]["status_requests"] for s in stats.values()),
        "publish_failures": sum(bus.get("publish_failures", 0) for bus in buses),
        "published": sum(bus.get("published", 0) for bus in buses),
    }
    for name, values in (("lag", lags(answers)), ("lag_elsewhere", lags(elsewhere))):
        result[f"{name}_p50"] = percentile(values, 0.50)
        result[f"{name}_p95"] = percentile(values, 0.95)
        result[f"{name}_max"] = values[-1] if values else float("nan")
    return result


def run(name: str, tasks: int, time_scale: float, seed: int) -> dict[str, Any]:
    workers_text, _, mode = name.partition("-")
    workers = int(workers_text)
    deployment = Deployment(workers, mode == "bus", tasks, time_scale, seed)
    try:
        deployment.wait_ready()
        result = asyncio.run(measure(deployment, tasks, time_scale))
    finally:
        deployment.close()
    return {"run": name, "seed": seed, **result}


def ms(value: float) -> str:
    return "–" if value != value else f"{value:,.0f}"  # NaN: no such task


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | tasks | SUCCESS | final callback elsewhere | lag p50 / p95 / max (ms) "
        "| elsewhere: lag p50 / p95 / max (ms) | callbacks per worker | status requests / task "
        "| publish failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {r['run']} | {r['tasks']} | {r['success']} | {r['elsewhere']} "
        f"({r['elsewhere'] / r['tasks']:.0%}) "
        f"| {ms(r['lag_p50'])} / {ms(r['lag_p95'])} / {ms(r['lag_max'])} "
        f"| {ms(r['lag_elsewhere_p50'])} / {ms(r['lag_elsewhere_p95'])} "
        f"/ {ms(r['lag_elsewhere_max'])} "
        f"| {' / '.join(map(str, r['callbacks_by_worker']))} "
        f"| {r['status_requests'] / r['tasks']:.2f} | {r['publish_failures']} |"
        for r in rows
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_workers")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--runs", default=",".join(RUNS), help="of " + ", ".join(RUNS))
    parser.add_argument("--repeat", type=int, default=1, help="each run again, next seed")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print raw results as JSON too")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    for name in names:
        workers, _, mode = name.partition("-")
        if not workers.isdigit() or mode not in ("bus", "poll"):
            parser.error(f"a run is WORKERS-bus or WORKERS-poll, got {name!r}")
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.tasks} tasks, time scale {args.time_scale}",
        flush=True,
    )
    rows = []
    for repeat in range(args.repeat):
        for name in names:
            row = run(name, args.tasks, args.time_scale, args.seed + repeat)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
