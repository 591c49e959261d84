"""The fast fault soak (issue #8): ``python -m benchmarks.soak --fast`` must pass.

It runs the CI profile of benchmarks/soak.py (60 imagine -> U1..U4 -> download chains,
every fault kind at several percent, the simulator in its own process, the webhook
receiver on) under ``PYTHONASYNCIODEBUG=1`` and ``-W error::ResourceWarning``, and
checks what the script judged: no non-mjasync exception, duplicate, resent maybe-sent
submit, lost or misreported task, corrupt or partial file, leaked key or resource, and
every forged notification refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import mjasync
from mjasync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "server_error",
    "rate_limit",
    "drop",
    "malformed",
    "submit_fault_before",
    "submit_fault_after",
    "latency_spike",
    "task_failure",
    "stuck",
    "notify_drop",
    "notify_duplicate",
    "notify_reorder",
    "image_cut",
    "image_truncated",
    "image_wrong_type",
}


@pytest.mark.slow
def test_fast_soak_survives_every_fault_kind(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "downloads"
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::ResourceWarning",
            "-m",
            "benchmarks.soak",
            "--fast",
            "--seed",
            "1",
            "--out",
            str(out),
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["passed"], report
    for verdict in (
        "duplicates",
        "resent_after_maybe_sent",
        "lost",
        "misreported",
        "corrupt",
        "partial",
        "missing_files",
        "foreign_tasks",
        "key_leaks",
        "problems",
    ):
        assert summary[verdict] == 0, (verdict, report)
    # Every job reported back, and every fault kind really played.
    assert summary["jobs"] == 60
    assert sum(summary["outcomes"].values()) == 60
    assert set(summary["faults"]) == KINDS
    assert all(count > 0 for count in summary["faults"].values()), summary["faults"]
    # The chains went all the way: upscales finished and images were saved, some failed
    # with typed errors, and the honest maybe-sent rule was exercised.
    assert summary["steps"]["upscale"].get("SUCCESS", 0) > 0
    saved = summary["steps"]["download"].get("SUCCESS", 0)
    assert saved > 0
    assert len(list(out.glob("*.png"))) == saved
    assert len(summary["outcomes"]) > 2
    assert summary["maybe_sent_created"] > 0
    # Forged notifications (no token, a wrong one, 2 MB) reached the receiver, all refused.
    forged = summary["forged_notifications"]
    assert sum(n for answer, n in forged.items() if answer in {"401", "403"}) > 0
    assert {answer for answer in forged if not answer.startswith("Client")} <= {
        "401",
        "403",
        "413",
    }


# -- what the soak found ---------------------------------------------------------------------


async def test_download_cancelled_while_creating_its_temp_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's cancellation that lands while the temporary file is being created.

    Found by the soak: the file was created in a worker thread outside the cleanup's
    reach, so a cancellation there left a ``.part`` file and an open descriptor.
    """
    loop = asyncio.get_running_loop()
    creating = asyncio.Event()
    real_mkstemp = tempfile.mkstemp

    def slow_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        # A slow disk: the cancellation arrives while the file is being created.
        loop.call_soon_threadsafe(creating.set)
        time.sleep(0.05)
        return real_mkstemp(*args, **kwargs)

    poll = mjasync.PollPolicy(interval=0.01, first_poll=0.0)
    async with (
        Simulator(dialect="plus", time_scale=0.001) as sim,
        mjasync.Client(sim.base_url, "key", poll=poll) as mj,
    ):
        grid = await mj.await_task(await mj.imagine("a red fox"))
        monkeypatch.setattr(tempfile, "mkstemp", slow_mkstemp)
        download = asyncio.ensure_future(mj.download(grid, tmp_path))
        await creating.wait()
        download.cancel()
        with pytest.raises(asyncio.CancelledError):
            await download
        # Let the worker thread finish whatever it was doing.
        await asyncio.sleep(0.1)
    assert os.listdir(tmp_path) == []
