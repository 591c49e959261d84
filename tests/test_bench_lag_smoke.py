"""Smoke test of benchmarks/bench_lag.py (issue #11): it runs and its rows add up.

Seconds of work at a tiny size and a fast simulated clock; it never checks a timing (those
belong in benchmarks/README.md), only that every row is there and the counts are sane.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = 5


SCALE = 0.005


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_lag", *args, "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """The rows a run printed as JSON after its table."""
    out, err = process.communicate(timeout=50)
    assert process.returncode == 0, err
    rows: list[dict[str, Any]] = json.loads(out[out.index("\n[") :])
    return rows


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict[str, Any]]]:
    """Both modes, side by side (each waits mostly on its simulator's start-up)."""
    lag = start(
        "--tasks",
        str(TASKS),
        "--time-scale",
        str(SCALE),
        "--clients",
        "mjasync,peer-3s,peer-0.5s,tick-0.5s",
    )
    overhead = start("--overhead", "--iterations", "20", "--rounds", "2")
    try:
        return {"lag": rows_of(lag), "overhead": rows_of(overhead)}
    finally:
        for process in (lag, overhead):
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.mark.slow
def test_lag_benchmark_runs_every_client(runs: dict[str, list[dict[str, Any]]]) -> None:
    rows = runs["lag"]
    assert [r["client"] for r in rows] == ["mjasync", "peer-3s", "peer-0.5s", "tick-0.5s"]
    for r in rows:
        assert r["tasks"] == TASKS
        assert r["finished"] == r["succeeded"] == r["finished_while_waiting"] == TASKS
        # Every lag was split at a status request the simulator logged.
        assert r["decomposed"] == TASKS
        assert 0 <= r["lag_min"] <= r["lag_p50"] <= r["lag_p95"] <= r["lag_max"]
        assert r["answer_p50"] >= 0
        # The two parts of each lag add up to it (1 ms of finishTime truncation, real).
        parts = r["poll_wait_mean"] + r["answer_mean"]
        assert math.isclose(parts, r["lag_mean"], abs_tol=1 / SCALE)
        assert r["requests"] > 0
        assert r["requests_per_task"] == r["requests"] / TASKS
        assert r["requests_per_s"] > 0
        assert r["cpu_ms_per_task"] > 0
        assert r["wall_s"] > 0
    mj, *peers, tick = rows
    # The poller sent what the simulator saw (a request cut off at close may not arrive).
    assert 0 < mj["requests"] <= mj["client_requests"]
    assert mj["snapshots"] >= TASKS
    for peer in peers:
        # A peer awaits every answer: its count and the simulator's are the same, and it
        # asked about each task at least once.
        assert peer["requests"] == peer["client_requests"] >= TASKS
    # The shared tick asks about all five tasks in each request until they finish.
    assert tick["requests"] == tick["client_requests"] > 0
    assert tick["ids_per_request"] > 1


@pytest.mark.slow
def test_fetch_overhead_mode(runs: dict[str, list[dict[str, Any]]]) -> None:
    rows = runs["overhead"]
    assert [r["call"] for r in rows] == ["Client.fetch()", "aiohttp get + read + json.loads"]
    for r in rows:
        assert r["iterations"] == 20
        assert r["rounds"] == 2
        assert 0 < r["wall_us_best"] <= r["wall_us_median"]
        assert 0 <= r["cpu_us_best"] <= r["cpu_us_median"]
