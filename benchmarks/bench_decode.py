"""Decoding benchmark: microseconds per task snapshot for the captured wire payloads.

    python -m benchmarks.bench_decode [--repeat 7] [--min-time 0.2]

Each case decodes an already-parsed JSON value (``json.loads`` is reported separately,
since the poller parses each response body once) with the same functions the client
uses: `decode_task` for one object, `decode_tasks` for a list-by-condition array.
The payloads are the real captures in ``tests/payloads`` (reference §12). For every
case the best of ``--repeat`` timeit runs is reported, as µs per task snapshot.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mjasync
from mjasync._serde import clear_caches, decode_task, decode_tasks

PAYLOADS = Path(__file__).resolve().parent.parent / "tests" / "payloads"


def load(name: str) -> Any:
    """Parse one captured payload."""
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def list_of_100() -> list[dict[str, Any]]:
    """A list-by-condition answer of 100 tasks: mostly in flight, some finished grids."""
    grid = load("task_imagine_success_plus.json")
    running = load("task_imagine_in_progress_newapi.json")
    tasks = []
    for i in range(100):
        task = dict(grid if i % 4 == 0 else running)
        task["id"] = str(1748339029401828 + i)
        tasks.append(task)
    return tasks


def cases() -> list[tuple[str, int, Callable[[], object], bytes]]:
    """(label, snapshots per call, decode call, raw body) for each benchmark case."""
    grid = load("task_imagine_success_plus.json")
    running = load("task_imagine_in_progress_newapi.json")
    trueai = load("task_upscale_success_trueai.json")
    batch = list_of_100()
    return [
        (
            "PLUS grid SUCCESS, 9 buttons (§12d)",
            1,
            lambda: decode_task(grid),
            json.dumps(grid).encode(),
        ),
        (
            "NEWAPI IN_PROGRESS (§12e)",
            1,
            lambda: decode_task(running),
            json.dumps(running).encode(),
        ),
        (
            "trueai upscale with extras, 15 buttons",
            1,
            lambda: decode_task(trueai),
            json.dumps(trueai).encode(),
        ),
        (
            "list-by-condition array of 100",
            100,
            lambda: decode_tasks(batch),
            json.dumps(batch).encode(),
        ),
    ]


def cold_call(func: Callable[[], object]) -> object:
    """*func* with the decoder's time and button caches emptied first (a first sight)."""
    clear_caches()
    return func()


def best_per_call(func: Callable[[], object], repeat: int, min_time: float) -> float:
    """Seconds per call: the best of *repeat* runs, each at least *min_time* long."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(number, int(number * min_time / 0.2))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main(argv: list[str] | None = None) -> int:
    """Run every case and print a Markdown table; returns 0."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per case")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per run, at least")
    args = parser.parse_args(argv)

    print(
        f"mjasync {mjasync.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.machine()}, best of {args.repeat}"
    )
    print()
    print(
        "| case | decode µs/snapshot (cold) | decode µs/snapshot (warm) "
        "| json.loads µs/snapshot | snapshots/s (cold decode) |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, snapshots, func, raw in cases():
        cold = best_per_call(functools.partial(cold_call, func), args.repeat, args.min_time)
        cold /= snapshots
        warm = best_per_call(func, args.repeat, args.min_time) / snapshots
        parse = best_per_call(functools.partial(json.loads, raw), args.repeat, args.min_time)
        parse /= snapshots
        print(
            f"| {label} | {cold * 1e6:.2f} | {warm * 1e6:.2f} | {parse * 1e6:.2f} "
            f"| {1 / cold:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
