"""The fast fault soak (issue #8): ``python -m benchmarks.soak --fast`` must pass.

It runs the CI profile of benchmarks/soak.py (60 imagine -> U1..U4 -> download chains,
every fault kind at several percent, the simulator in its own process, the webhook
receiver on) under ``PYTHONASYNCIODEBUG=1`` and ``-W error::ResourceWarning``, and
checks what the script judged: no non-mjasync exception, duplicate, resent maybe-sent
submit, lost or misreported task, corrupt or partial file, leaked key or resource.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
