"""Crash and resume: SIGKILL the batch command mid-run, run it again, and audit the server.

The simulator runs in its own process so that its counters survive the killed client;
the test reads them through ``GET /sim/stats``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JOBS = 8
BUTTONS = ("U1", "U2")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local test server
        return json.loads(response.read())


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """A simulator in its own process; yields its base URL and always kills it."""
    port = _free_port()
    scale = "0.02"
    argv = ["-m", "mjasync.simulator", "--port", str(port), "--time-scale", scale]
    argv += ["--slots", "6", "--queue-size", "12", "--seed", "5"]
    process = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _get_json(f"{base_url}/sim/stats")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"simulator did not start: {stderr[-2000:]}")
                time.sleep(0.05)
        yield base_url
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _journal_progress(path: Path) -> tuple[int, int]:
    """(steps accepted or finished, files downloaded), read from another process."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            accepted = db.execute(
                "SELECT COUNT(*) FROM steps WHERE status IN ('accepted', 'success')"
            ).fetchone()[0]
            downloaded = db.execute("SELECT COUNT(*) FROM steps WHERE path IS NOT NULL").fetchone()[
                0
            ]
    except sqlite3.Error:
        return 0, 0
    return int(accepted), int(downloaded)


def test_sigkill_mid_run_then_rerun_pays_once_and_finishes_everything(
    simulator: str, tmp_path: Path
) -> None:
    """Kill -9 with tasks in flight; the rerun finishes every job with no extra submit."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(
            json.dumps({"prompt": f"a fox, study {n}", "key": f"job{n}"}) + "\n"
            for n in range(JOBS)
        )
    )
    out = tmp_path / "out"
    journal = tmp_path / "journal.sqlite3"
    command = [
        sys.executable, "-m", "mjasync", "batch", str(jobs), "--out", str(out),
        "--journal", str(journal), "--actions", ",".join(BUTTONS), "--concurrency", "4",
        "--base-url", simulator, "--api-key", "k", "--poll-interval", "0.05", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            accepted, downloaded = _journal_progress(journal)
            if accepted >= 4 and downloaded >= 1:
                break
            if first.poll() is not None:
                pytest.fail(f"the first run ended before the kill: {first.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the first run made no progress")
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
        first.stdout.close()  # type: ignore[union-attr]
        first.stderr.close()  # type: ignore[union-attr]
    assert first.returncode == -signal.SIGKILL
    done_before, _ = _journal_progress(journal)
    assert done_before < JOBS * (1 + len(BUTTONS)), "the kill came too late to test anything"

    second = subprocess.run(command, capture_output=True, timeout=40, env=env, check=False)
    report = json.loads(second.stdout or b"{}")
    assert second.returncode == 0, (
        report.get("failed"),
        report.get("unknown"),
        second.stderr[-2000:],
    )
    assert report["ok"] is True
    assert report["done"] == JOBS
    assert report["failed"] == {}
    assert report["unknown"] == {}

    stats = _get_json(f"{simulator}/sim/stats")
    assert isinstance(stats, dict)
    assert stats.get("POST /mj/submit/imagine") == JOBS
    assert stats.get("POST /mj/submit/action") == JOBS * len(BUTTONS)

    with sqlite3.connect(journal) as db:
        task_ids = {
            (key, step): task_id
            for key, step, task_id in db.execute("SELECT job_key, step, task_id FROM steps")
        }
    # file_stem(task, prefix="<key>-<step>"): each file names its job, step and task.
    expected = {
        f"job{n}-{step}-{task_ids[f'job{n}', step]}.png"
        for n in range(JOBS)
        for step in ("imagine", *BUTTONS)
    }
    images = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert images == expected
    for name in expected:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert data.endswith(PNG_IEND), name

    with sqlite3.connect(journal) as db:
        runs = db.execute("SELECT outcome FROM runs ORDER BY id").fetchall()
    assert runs == [(None,), ("ok",)]  # the killed run never wrote its end
