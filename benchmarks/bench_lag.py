"""Completion-lag benchmark (issue #11): mjasync at its defaults against peer-style clients.

    python -m benchmarks.bench_lag --tasks 100,1000 [--clients mjasync,peer-3s,peer-0.5s]
                                   [--repeat 3] [--json] [--time-scale 1.0]
    python -m benchmarks.bench_lag --overhead [--iterations 2000] [--rounds 7]
    python -m benchmarks.bench_lag --tasks 100 --clients mjasync --profile [pyinstrument]

Each (size, client) run gets a fresh simulator with the same seed, in a child process,
so every client waits on the same multiset of job lengths (``--repeat`` runs the whole
set again with the next seed, so a range covers other job lengths too): ~30 s jobs
(±30 %), a queue wait, then Midjourney's uneven progress steps (0, 15, 31, ... 93 %).
The client submits N imagines spread over 3 s, then waits for all N, and the benchmark
reports:

* completion lag: from the server's ``finishTime`` to the moment the client knew
  (``await_task`` returned; the peer parsed a final snapshot), p50 / p95 / max;
* status requests (counted by the simulator) per task and per second;
* client CPU (``time.process_time`` of this process) over the waiting phase, per task;
* where the lag goes: "poll wait", from ``finishTime`` to the arrival at the simulator of
  the first status request naming the task after it finished, and "answer", from there
  to the client knowing; and the gap between that request and the one before it.

The clients, one after the other (never at once: one client's load would slow the shared
single-threaded simulator and the two cores for the others, and CPU per client would mix):

* ``mjasync``: ``mjasync.Client`` with the default ``PollPolicy()``, ``await_task`` each;
* ``peer-3s`` / ``peer-0.5s``: what peer SDKs do (reference/peers.md: Legnext 3 s, the
  JS waitForTask 3 s, Replicate 0.5 s): per task, ``GET /mj/task/{id}/fetch``, ``json.loads``,
  sleep the interval, again; plain aiohttp with its default pool of 100 connections;
* ``tick-0.5s`` / ``tick-1s`` (opt-in, a reference for the poller redesign, not a product):
  one shared clock; every tick posts ``list-by-condition`` for every unfinished task, in
  batches of 100, plain aiohttp + ``json.loads``.

``--time-scale`` runs the simulator's clock faster (0.01: a 30 s job takes 0.3 s) and
scales every client interval, the mjasync policy's durations and its request ceiling by
the same factor, so the comparison keeps its shape; lags and request rates are then
reported in simulated time (real ms / time_scale). The fixed costs (HTTP round trip,
event loop) do not scale, so only ``--time-scale 1`` (the default) gives real numbers;
smaller scales are for the CI smoke test.

``--overhead`` times ``Client.fetch()`` against ``aiohttp`` ``session.get`` + ``read`` +
``json.loads`` on the same route and the same finished task, one call at a time: wall
and client-CPU µs per call, best and median of ``--rounds`` rounds, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs

import mjasync
from benchmarks.bench_wait import free_port, start_profile
from mjasync import simulator

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = 11
# Simulated seconds. 1 + 4.5 + 7 x 3.5 = 30 s a job before jitter: the proxy's Discord
# interaction, Midjourney's own queue ("Waiting to start"), then seven progress steps.
JOB: dict[str, Any] = {
    "queue_delay": 1.0,
    "start_delay": 4.5,
    "step_delay": 3.5,
    "progress_percents": list(simulator.MIDJOURNEY_PROGRESS),
    "duration_jitter": 0.3,
    "step_jitter": 0.5,
}
JOB_SECONDS = 30.0
SUBMIT_WINDOW = 3.0
SUBMIT_CONCURRENCY = 200
PEERS = {"peer-3s": 3.0, "peer-0.5s": 0.5}
# Opt-in reference clients for the poller redesign: one shared tick that asks about every
# unfinished task at once, in list-by-condition batches of 100.
TICKS = {"tick-0.5s": 0.5, "tick-1s": 1.0}
CLIENTS = ("mjasync", *PEERS)
ALL_CLIENTS = (*CLIENTS, *TICKS)
BATCH = 100
FINAL = frozenset({"SUCCESS", "FAILURE", "CANCEL", "MODAL"})
STATUS_ROUTES = frozenset(
    {"GET /mj/task/{id}/fetch", "POST /mj/task/list-by-condition", "POST /mj/task/list-by-ids"}
)
# The durations of PollPolicy; scaled together with the simulator's clock.
POLICY_DURATIONS = (
    "tick",
    "interval",
    "max_interval",
    "first_poll",
    "not_found_grace",
    "webhook_interval",
)


def policy_for(time_scale: float) -> mjasync.PollPolicy:
    """The default policy, its clock scaled like the simulator's (itself at scale 1)."""
    policy = mjasync.PollPolicy()
    if time_scale == 1:
        return policy
    changes: dict[str, Any] = {
        name: getattr(policy, name) * time_scale
        for name in POLICY_DURATIONS
        if hasattr(policy, name)
    }
    changes["max_requests_per_second"] = policy.max_requests_per_second / time_scale
    return attrs.evolve(policy, **changes)


# -- the simulator, in its own process ------------------------------------------------------


def status_rows(sim: simulator.Simulator) -> list[tuple[float, list[str]]]:
    """Arrival time (CLOCK_MONOTONIC, shared by every process) and ids of each status request."""
    rows: list[tuple[float, list[str]]] = []
    for record in sim.request_log:
        if record.route not in STATUS_ROUTES:
            continue
        if record.route.startswith("GET"):
            ids = [record.path.rsplit("/", 2)[-2]]
        else:
            body = record.body if isinstance(record.body, dict) else {}
            ids = [str(i) for i in body.get("ids") or ()]
        rows.append((record.time, ids))
    return rows


async def host() -> None:
    """Child process: a control app that starts a fresh simulator per run and hands over
    its request log. One process for every run, so Python starts once."""
    from aiohttp import web

    current: list[simulator.Simulator] = []

    def orphaned() -> None:
        # The parent holds our stdin: end with it, even when it was killed mid-run.
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()

    async def start(request: web.Request) -> web.Response:
        for sim in current:
            await sim.close()
        current.clear()
        options = await request.json()
        sim = simulator.Simulator(simulator.SimulatorConfig(**options), port=free_port())
        await sim.start()
        current.append(sim)
        return web.json_response({"base_url": sim.base_url})

    async def status_log(request: web.Request) -> web.Response:
        return web.json_response(status_rows(current[0]) if current else [])

    app = web.Application()
    app.router.add_post("/start", start)
    app.router.add_get("/log", status_log)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


class Host:
    """The child process that runs the simulators, so the CPU measured here is the client's."""

    def __init__(self, job: dict[str, Any] | None = None) -> None:
        self.job = {**JOB, **(job or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_lag", "--host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening"):
            self.close()
            msg = f"the simulator host did not start: {line!r}"
            raise RuntimeError(msg)
        self.control = line.split()[1]
        self.base_url = ""

    async def start(self, tasks: int, time_scale: float, seed: int = SEED) -> str:
        """A fresh simulator (the previous one stops) for *tasks* concurrent jobs."""
        options = {
            "dialect": "plus",
            "slots": tasks,
            "queue_size": tasks,
            "time_scale": time_scale,
            "notify": False,
            "image_size": 8,
            "seed": seed,
            **self.job,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.control}/start", json=options) as response,
        ):
            response.raise_for_status()
            self.base_url = str((await response.json())["base_url"])
        return self.base_url

    def cpu(self) -> float:
        """CPU seconds (user + system) the simulator process has used so far."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # not Linux
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def status_log(self) -> list[tuple[float, list[str]]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.control}/log") as response,
        ):
            rows: list[tuple[float, list[str]]] = await response.json()
        return rows

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


# -- the clients ----------------------------------------------------------------------------


@attrs.define
class Outcome:
    """What a client learned of one task: its id, status, finishTime and when it knew."""

    task_id: str
    status: str
    finish_ms: int
    known_wall: float
    known_mono: float


Submit = Callable[[int], Awaitable[str]]
Wait = Callable[[str], Awaitable[Outcome]]


def knew(task_id: str, status: str, finish_ms: object) -> Outcome:
    """Stamp the moment a client learned a task's final status (both clocks)."""
    wall, mono = time.time(), time.monotonic()
    finish = finish_ms if isinstance(finish_ms, int) else 0
    return Outcome(task_id, status, finish, wall, mono)


async def submit_all(tasks: int, time_scale: float, submit: Submit) -> list[str]:
    """Submit *tasks* imagines spread evenly over the (scaled) submit window."""
    limit = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    started = time.monotonic()
    window = SUBMIT_WINDOW * time_scale

    async def one(i: int) -> str:
        await asyncio.sleep(max(0.0, started + window * i / tasks - time.monotonic()))
        async with limit:
            return await submit(i)

    return list(await asyncio.gather(*(one(i) for i in range(tasks))))


async def run_mjasync(
    server: Host, tasks: int, time_scale: float, measure: Callable[[Wait, list[str]], Any]
) -> dict[str, Any]:
    policy = policy_for(time_scale)
    async with mjasync.Client(server.base_url, "bench", poll=policy) as mj:

        async def submit(i: int) -> str:
            sub = await mj.imagine(f"benchmark fox {i}")
            if sub.task_id is None:
                msg = f"the simulator accepted no task: {sub!r}"
                raise RuntimeError(msg)
            return sub.task_id

        async def wait(task_id: str) -> Outcome:
            try:
                task = await mj.await_task(task_id, timeout=20 * JOB_SECONDS * time_scale + 60)
            except mjasync.TaskError as error:  # FAILURE etc.: known all the same
                task = error.task
            finish = task.raw.get("finishTime")
            return knew(task.id, task.status, finish)

        ids = await submit_all(tasks, time_scale, submit)
        result: dict[str, Any] = await measure(wait, ids)
        stats = mj.poll_stats
    result["client_requests"] = stats.status_requests
    result["ticks"] = stats.ticks
    result["snapshots"] = stats.snapshots
    result["policy"] = repr(policy)
    return result


async def run_peer(
    server: Host,
    tasks: int,
    time_scale: float,
    interval: float,
    measure: Callable[[Wait, list[str]], Any],
) -> dict[str, Any]:
    gap = interval * time_scale
    sent = [0]
    deadline_after = 20 * JOB_SECONDS * time_scale + 60
    # What a peer SDK does: one session (aiohttp's default pool of 100 connections), one
    # fetch per task per interval, json.loads, a fixed sleep. Nothing batched or shared.
    async with aiohttp.ClientSession() as session:

        async def submit(i: int) -> str:
            url = f"{server.base_url}/mj/submit/imagine"
            async with session.post(url, json={"prompt": f"benchmark fox {i}"}) as response:
                body = json.loads(await response.read())
            return str(body["result"])

        async def wait(task_id: str) -> Outcome:
            url = f"{server.base_url}/mj/task/{task_id}/fetch"
            deadline = time.monotonic() + deadline_after
            while time.monotonic() < deadline:
                async with session.get(url) as response:
                    raw = await response.read()
                sent[0] += 1
                task = json.loads(raw)
                status = task.get("status")
                if status in FINAL:
                    return knew(task_id, status, task.get("finishTime"))
                await asyncio.sleep(gap)
            msg = f"task {task_id} did not finish within {deadline_after:.0f} s"
            raise TimeoutError(msg)

        ids = await submit_all(tasks, time_scale, submit)
        result: dict[str, Any] = await measure(wait, ids)
    result["client_requests"] = sent[0]
    return result


async def run_tick(
    server: Host,
    tasks: int,
    time_scale: float,
    interval: float,
    measure: Callable[[Wait, list[str]], Any],
) -> dict[str, Any]:
    gap = interval * time_scale
    sent = [0]
    deadline_after = 20 * JOB_SECONDS * time_scale + 60
    pending: dict[str, asyncio.Future[Outcome]] = {}
    loop_task: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as session:

        async def submit(i: int) -> str:
            url = f"{server.base_url}/mj/submit/imagine"
            async with session.post(url, json={"prompt": f"benchmark fox {i}"}) as response:
                body = json.loads(await response.read())
            return str(body["result"])

        async def ask(ids: list[str]) -> None:
            url = f"{server.base_url}/mj/task/list-by-condition"
            async with session.post(url, json={"ids": ids}) as response:
                raw = await response.read()
            sent[0] += 1
            for task in json.loads(raw):
                future = pending.get(str(task.get("id")))
                status = task.get("status")
                if future is not None and status in FINAL and not future.done():
                    future.set_result(knew(str(task["id"]), status, task.get("finishTime")))

        async def ticks() -> None:
            # Every tick asks about every unfinished task: the request count follows the
            # tick and the number of batches, never the number of tasks.
            deadline = time.monotonic() + deadline_after
            while time.monotonic() < deadline:
                ids = [i for i, f in pending.items() if not f.done()]
                if not ids:
                    return
                started = time.monotonic()
                await asyncio.gather(*(ask(ids[k : k + BATCH]) for k in range(0, len(ids), BATCH)))
                await asyncio.sleep(max(0.0, started + gap - time.monotonic()))
            for future in pending.values():
                if not future.done():
                    future.set_exception(TimeoutError("the tick client ran out of time"))

        async def wait(task_id: str) -> Outcome:
            future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            pending[task_id] = future
            if not loop_task:
                loop_task.append(asyncio.create_task(ticks()))
            return await future

        ids = await submit_all(tasks, time_scale, submit)
        result: dict[str, Any] = await measure(wait, ids)
        await loop_task[0]
    result["client_requests"] = sent[0]
    return result


# -- one run --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted *values* (NaN when empty)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def spread(values: list[float], prefix: str) -> dict[str, float]:
    values = sorted(values)
    return {
        f"{prefix}_p50": percentile(values, 0.50),
        f"{prefix}_p95": percentile(values, 0.95),
        f"{prefix}_max": values[-1] if values else float("nan"),
        f"{prefix}_mean": statistics.fmean(values) if values else float("nan"),
    }


def decompose(
    outcomes: list[Outcome], log: list[tuple[float, list[str]]], time_scale: float
) -> dict[str, float]:
    """Split each lag at the first status request naming the task after it finished."""
    asked: dict[str, list[float]] = {}
    for when, ids in log:
        for task_id in ids:
            asked.setdefault(task_id, []).append(when)
    offset = time.time() - time.monotonic()  # wall = monotonic + offset, this machine
    waits: list[float] = []
    answers: list[float] = []
    gaps: list[float] = []
    for outcome in outcomes:
        times = sorted(asked.get(outcome.task_id, ()))
        finished = outcome.finish_ms / 1000 - offset
        # finishTime is whole milliseconds, truncated: the true moment is up to 1 ms later.
        at = bisect_left(times, finished - 0.001)
        if at >= len(times):
            continue
        waits.append((times[at] - finished) * 1000 / time_scale)
        answers.append((outcome.known_mono - times[at]) * 1000 / time_scale)
        if at > 0:
            gaps.append((times[at] - times[at - 1]) * 1000 / time_scale)
    result = spread(waits, "poll_wait") | spread(answers, "answer") | spread(gaps, "gap")
    total = sum(waits) + sum(answers)
    result["poll_wait_share"] = sum(waits) / total if total else float("nan")
    result["decomposed"] = len(waits)
    return result


async def run_once(
    server: Host,
    tasks: int,
    client: str,
    time_scale: float = 1.0,
    profile: str | None = None,
    seed: int = SEED,
) -> dict[str, Any]:
    """One client waiting for *tasks* jobs on a fresh simulator; the row of the table."""
    await server.start(tasks, time_scale, seed)
    outcomes: list[Outcome] = []

    async def measure(wait: Wait, ids: list[str]) -> dict[str, Any]:
        server_cpu = server.cpu()
        cpu = time.process_time()
        wall = time.monotonic()
        started = time.time()
        stop_profile = start_profile(profile)
        outcomes.extend(await asyncio.gather(*(wait(task_id) for task_id in ids)))
        stop_profile()
        return {
            "wait_started": started,
            "wall_s": time.monotonic() - wall,
            "cpu_s": time.process_time() - cpu,
            "server_cpu_s": server.cpu() - server_cpu,
        }

    if client == "mjasync":
        row = await run_mjasync(server, tasks, time_scale, measure)
    elif client in TICKS:
        row = await run_tick(server, tasks, time_scale, TICKS[client], measure)
    else:
        row = await run_peer(server, tasks, time_scale, PEERS[client], measure)
    log = await server.status_log()
    lags = [(o.known_wall - o.finish_ms / 1000) * 1000 / time_scale for o in outcomes]
    requests = sum(1 for _, ids in log if ids)
    asked = sum(len(ids) for _, ids in log)
    wall = row["wall_s"]
    row |= {
        "client": client,
        "tasks": tasks,
        "seed": seed,
        "time_scale": time_scale,
        "finished": len(outcomes),
        "succeeded": sum(o.status == "SUCCESS" for o in outcomes),
        # Every job outlasts the submit window, so every task finished while awaited.
        "finished_while_waiting": sum(o.finish_ms / 1000 >= row["wait_started"] for o in outcomes),
        "requests": requests,
        "requests_per_task": requests / tasks,
        "requests_per_s": requests / (wall / time_scale) if wall else 0.0,
        # How often each task was asked about, and how full the requests were.
        "polls_per_task": asked / tasks,
        "ids_per_request": asked / requests if requests else 0.0,
        "cpu_ms_per_task": row["cpu_s"] / tasks * 1000,
        "client_cores": row["cpu_s"] / wall if wall else 0.0,
        "server_cores": row["server_cpu_s"] / wall if wall else 0.0,
        **spread(lags, "lag"),
        "lag_min": min(lags) if lags else float("nan"),
        **decompose(outcomes, log, time_scale),
    }
    return row


# -- fetch() overhead -----------------------------------------------------------------------


async def overhead(server: Host, iterations: int, rounds: int) -> list[dict[str, Any]]:
    """µs per call of Client.fetch() and of bare aiohttp + json.loads, same task, same route."""
    await server.start(1, 0.001)
    async with (
        mjasync.Client(server.base_url, "bench") as mj,
        aiohttp.ClientSession() as session,
    ):
        sub = await mj.imagine("benchmark fox")
        task = await mj.await_task(sub, timeout=60)
        url = f"{server.base_url}/mj/task/{task.id}/fetch"

        async def bare() -> None:
            async with session.get(url) as response:
                body = await response.read()
            json.loads(body)

        async def client() -> None:
            await mj.fetch(task.id)

        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "Client.fetch()": client,
            "aiohttp get + read + json.loads": bare,
        }
        timings: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in calls}
        for call in calls.values():  # warm connections, caches and code paths
            for _ in range(min(200, iterations)):
                await call()
        for _ in range(rounds):
            for name, call in calls.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(iterations):
                    await call()
                walls, cpus = timings[name]
                walls.append((time.perf_counter() - wall) / iterations * 1e6)
                cpus.append((time.process_time() - cpu) / iterations * 1e6)
    return [
        {
            "call": name,
            "iterations": iterations,
            "rounds": rounds,
            "wall_us_best": min(walls),
            "wall_us_median": statistics.median(walls),
            "cpu_us_best": min(cpus),
            "cpu_us_median": statistics.median(cpus),
        }
        for name, (walls, cpus) in timings.items()
    ]


# -- output ---------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tasks | client | seed | lag p50 / p95 / max (ms) | status requests | per task "
        "| per s | client CPU ms/task | client / sim cores |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['tasks']:,} | {r['client']} | {r['seed']} | {ms(r['lag_p50'])} / "
        f"{ms(r['lag_p95'])} / {ms(r['lag_max'])} | {r['requests']:,} | "
        f"{r['requests_per_task']:.2f} | {r['requests_per_s']:.1f} | {r['cpu_ms_per_task']:.2f} | "
        f"{r['client_cores']:.2f} / {r['server_cores']:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        "| tasks | client | poll wait p50 / p95 (ms) | answer p50 / p95 (ms) "
        "| gap before it p50 / p95 (ms) | share of lag waiting for a poll "
        "| polls per task | ids per request |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['tasks']:,} | {r['client']} | {ms(r['poll_wait_p50'])} / "
        f"{ms(r['poll_wait_p95'])} | {r['answer_p50']:.1f} / {r['answer_p95']:.1f} | "
        f"{ms(r['gap_p50'])} / {ms(r['gap_p95'])} | {r['poll_wait_share']:.1%} | "
        f"{r['polls_per_task']:.1f} | {r['ids_per_request']:.1f} |"
        for r in rows
    ]
    return "\n".join(lines)


def overhead_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| call | wall µs/call best / median | client CPU µs/call best / median |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r['call']} | {r['wall_us_best']:.0f} / {r['wall_us_median']:.0f} | "
        f"{r['cpu_us_best']:.0f} / {r['cpu_us_median']:.0f} |"
        for r in rows
    ]
    if len(rows) == 2:
        a, b = rows
        lines.append(
            f"| ratio | {a['wall_us_best'] / b['wall_us_best']:.2f}x / "
            f"{a['wall_us_median'] / b['wall_us_median']:.2f}x | "
            f"{a['cpu_us_best'] / b['cpu_us_best']:.2f}x / "
            f"{a['cpu_us_median'] / b['cpu_us_median']:.2f}x |"
        )
    return "\n".join(lines)


def job_setting(text: str) -> tuple[str, Any]:
    """``--job NAME=VALUE``: a number, or a comma-separated list of numbers."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE, e.g. start_delay=60")
    try:
        parsed: Any = json.loads(f"[{value}]" if "," in value else value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number or list") from exc
    return name, parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lag")
    parser.add_argument("--tasks", default="100,1000", help="comma-separated task counts")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="of " + ", ".join(ALL_CLIENTS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of the whole set, the n-th with seed + n"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the simulator's seed")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated clock speed; the clients' intervals scale with it (1: real numbers)",
    )
    parser.add_argument("--json", action="store_true", help="print raw results as JSON too")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cprofile",
        choices=["cprofile", "pyinstrument"],
        help="profile each waiting phase (cProfile, or pyinstrument if installed)",
    )
    parser.add_argument(
        "--job",
        action="append",
        default=[],
        type=job_setting,
        metavar="NAME=VALUE",
        help="override a simulated job setting (SimulatorConfig field), e.g. start_delay=60",
    )
    parser.add_argument("--overhead", action="store_true", help="time fetch() per call instead")
    parser.add_argument("--iterations", type=int, default=2000, help="calls per overhead round")
    parser.add_argument("--rounds", type=int, default=7, help="overhead rounds per call")
    parser.add_argument("--host", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        asyncio.run(host())
        return 0
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(clients) - set(ALL_CLIENTS))
    if unknown or not args.time_scale > 0:
        parser.error(f"unknown clients {unknown}" if unknown else "--time-scale must be > 0")
    server = Host(dict(args.job))
    try:
        if args.overhead:
            rows = asyncio.run(overhead(server, args.iterations, args.rounds))
            print(overhead_table(rows))
            if args.json:
                print(json.dumps(rows, indent=2))
            return 0
        results = []
        for rep in range(args.repeat):
            for count in (int(n) for n in args.tasks.split(",")):
                for client in clients:
                    row = asyncio.run(
                        run_once(
                            server, count, client, args.time_scale, args.profile, args.seed + rep
                        )
                    )
                    results.append(row)
                    print(
                        f"{client:10} {count:>6,} tasks: lag p50 {row['lag_p50']:,.0f} ms, "
                        f"{row['requests_per_task']:.2f} requests/task",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        server.close()
    print(f"time scale {args.time_scale:g}; mjasync policy: {policy_for(args.time_scale)}")
    print(f"jobs: {server.job}")
    print(table(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
