"""The ``mjasync`` command line: commands, --json output, one-line errors and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mjasync.cli import EXIT_API, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from mjasync.simulator import Simulator

FAST = ["--poll-interval", "0.01"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MJ_* variables must not leak into these tests."""
    for name in ("MJ_BASE_URL", "MJ_API_KEY", "MJ_AUTH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A fast simulator on the test's loop; the CLI runs its own loop in a thread."""
    async with Simulator(dialect="plus", time_scale=0.002, seed=4) as server:
        yield server


async def run_cli(*argv: str) -> int:
    """``main(argv)`` in a worker thread, so the simulator keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(main, list(argv))


def test_help_documents_exit_codes_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """``mjasync --help`` lists every exit code and the MJ_* variables."""
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for needle in ("MJ_BASE_URL", "MJ_API_KEY", "MJ_AUTH", "130", "mjasync demo", "batch"):
        assert needle in text


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing argument prints one line to stderr, no usage block, and exits 2."""
    with pytest.raises(SystemExit) as caught:
        main(["batch"])
    assert caught.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--out" in err


def test_missing_configuration_is_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No MJ_BASE_URL and no --base-url: one clear line, exit 2."""
    assert main(["task", "123"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "mjasync: error: no base_url given and MJ_BASE_URL is not set\n"


def test_an_unreachable_server_is_exit_3_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Connection refused is an API/connection error (3); --json still prints JSON."""
    code = main(["task", "123", "--base-url", "http://127.0.0.1:9", "--json"])
    assert code == EXIT_API
    out = capsys.readouterr().out
    assert json.loads(out)["ok"] is False


def test_a_malformed_batch_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input errors name the file and line, before anything is sent."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    argv = ["batch", str(jobs), "--out", str(tmp_path), "--base-url", "http://127.0.0.1:9"]
    assert main(argv) == EXIT_USAGE
    assert f"{jobs}:2: prompt must be a non-empty string" in capsys.readouterr().err


async def test_imagine_upscales_and_downloads_as_json(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``imagine --upscale U1,U2 --out DIR --json``: the grid, two upscales, three files."""
    code = await run_cli(
        "imagine", "a red fox", "--upscale", "U1,U2", "--out", str(tmp_path),
        "--base-url", sim.base_url, "--json", *FAST,
    )  # fmt: skip
    assert code == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["task"]["status"] == "SUCCESS"
    assert set(data["actions"]) == {"U1", "U2"}
    assert len(data["files"]) == 3
    assert all(Path(f).is_file() for f in data["files"])  # noqa: ASYNC240 - a test check


async def test_one_failed_upscale_keeps_the_others_and_exits_1(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed upscale is reported; the paid ones that succeeded are still kept and saved."""
    sim.inject("POST /mj/submit/action", "task_failure", reason="Job action restricted")
    code = await run_cli(
        "imagine", "a red fox", "--upscale", "U1,U2,U3", "--out", str(tmp_path),
        "--base-url", sim.base_url, "--json", *FAST,
    )  # fmt: skip
    assert code == EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert len(data["errors"]) == 1
    assert "Job action restricted" in next(iter(data["errors"].values()))
    assert len(data["actions"]) == 2
    assert len(data["files"]) == 3
    assert sim.requests["POST /mj/submit/action"] == 3


async def test_task_seed_and_action_commands(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``task --wait``, ``seed`` and ``action`` against one finished grid."""
    common = ["--base-url", sim.base_url, "--json", *FAST]
    assert await run_cli("imagine", "a wolf", *common) == EXIT_OK
    task_id = json.loads(capsys.readouterr().out)["task"]["id"]

    assert await run_cli("task", task_id, "--wait", *common) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["task"]["status"] == "SUCCESS"

    assert await run_cli("seed", task_id, *common) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["seed"]

    assert await run_cli("action", task_id, "V2", "--out", str(tmp_path), *common) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["task"]["status"] == "SUCCESS"
    assert len(data["files"]) == 1

    assert await run_cli("action", task_id, "U9", *common) == EXIT_USAGE
    assert "U9" in capsys.readouterr().err


async def test_human_output_has_no_json(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the result is plain lines (progress goes to stderr)."""
    assert await run_cli("imagine", "a hare", "--base-url", sim.base_url, *FAST) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("task ")
    assert "SUCCESS" in out


async def test_batch_with_a_failed_job_exits_1_and_says_why(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed job makes the batch exit 1; the report names the job and the reason."""
    sim.inject("POST /mj/submit/imagine", "task_failure", reason="Banned prompt detected")
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a fox\na wolf\n")
    argv = ["batch", str(jobs), "--out", str(tmp_path / "out"), "--actions", "U1"]
    code = await run_cli(*argv, "--base-url", sim.base_url, *FAST)
    assert code == EXIT_FAILED
    captured = capsys.readouterr()
    assert "1 of 2 jobs done" in captured.out
    assert "Banned prompt detected" in captured.out
    assert "failed" in captured.err  # the plain progress lines


async def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``mjasync demo`` serves its own simulator and finishes every job."""
    out = tmp_path / "demo"
    code = await run_cli("demo", "--out", str(out), "--time-scale", "0.005", "--json")
    assert code == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["done"] == 6
    assert len(report["files"]) == 6 + 4 + 4 + 2 + 2


def test_python_dash_m_and_version() -> None:
    """``python -m mjasync --version`` works like the console script."""
    result = subprocess.run(
        [sys.executable, "-m", "mjasync", "--version"], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip()


async def test_ctrl_c_exits_130_and_leaves_the_journal_consistent(
    tmp_path: Path,
) -> None:
    """SIGINT mid-batch: exit 130, the run is recorded as interrupted, a rerun finishes."""
    # Slow enough (a task takes ~1 s) that the batch cannot finish before the signal lands.
    async with Simulator(dialect="plus", time_scale=0.2, seed=9) as sim:
        jobs = tmp_path / "jobs.txt"
        jobs.write_text("".join(f"a heron {n}\n" for n in range(6)))
        journal = tmp_path / "j.sqlite3"
        argv = [
            sys.executable, "-m", "mjasync", "batch", str(jobs), "--out", str(tmp_path / "out"),
            "--journal", str(journal), "--actions", "U1", "--base-url", sim.base_url,
            "--poll-interval", "0.02", "--json",
        ]  # fmt: skip
        process = await anyio.open_process(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            with anyio.fail_after(30):
                # Another process writes the journal: nothing in this loop can be awaited.
                while not _accepted(journal):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
        assert code == EXIT_INTERRUPTED
        with sqlite3.connect(journal) as db:
            (outcome,) = db.execute("SELECT outcome FROM runs").fetchone()
            sending = db.execute("SELECT COUNT(*) FROM steps WHERE status = 'sending'").fetchone()
        assert outcome == "interrupted"
        assert sending == (0,)  # in-flight submits were allowed to finish and be recorded
        imagines = sim.requests["POST /mj/submit/imagine"]
        rerun = await run_cli(*argv[3:])
        assert rerun == EXIT_OK
        assert sim.requests["POST /mj/submit/imagine"] - imagines == 6 - imagines


def _accepted(journal: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT COUNT(*) FROM steps WHERE status = 'accepted'").fetchone()
    except sqlite3.Error:
        return False
    return bool(row[0])


def test_simulator_on_a_busy_port_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`mjasync simulator --port P` with P taken prints one error line and exits 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["simulator", "--port", str(port)])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(port) in err
    assert "Traceback" not in err
