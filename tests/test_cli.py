"""The ``mjasync`` command line: commands, --json output, one-line errors and exit codes."""

from __future__ import annotations

import io
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
from _servers import static_server
from _shared import CLI_FAST as FAST
from _shared import png, run_cli
from rich.console import Console

import mjasync
from mjasync.bulk import BulkEvent, Job
from mjasync.cli import (
    EXIT_API,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
    main,
)

# Unit tests of the bulk progress display drive it with hand-made events and read what
# it draws; it has no public face but the CLI's output, so they import it directly.
from mjasync.cli._display import BulkDisplay, Out
from mjasync.simulator import Simulator


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MJ_* variables must not leak into these tests."""
    for name in ("MJ_BASE_URL", "MJ_API_KEY", "MJ_AUTH"):
        monkeypatch.delenv(name, raising=False)


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
    assert "failed  line 1 (" in captured.out  # named by its line as well as its key
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


@pytest.mark.slow
def test_python_dash_m_and_version() -> None:
    """``python -m mjasync --version`` prints ``mjasync X.Y.Z``, like the console script."""
    result = subprocess.run(
        [sys.executable, "-m", "mjasync", "--version"], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"mjasync {mjasync.__version__}"


@pytest.mark.slow
async def test_ctrl_c_exits_130_and_leaves_the_journal_consistent(
    tmp_path: Path,
) -> None:
    """SIGINT mid-batch: exit 130, the run is recorded as interrupted, a rerun finishes."""
    # Slow enough (a task takes ~0.25 s, the signal lands within ~0.05 s of the first
    # accepted submit) that the batch cannot finish first; fast enough for the rerun.
    async with Simulator(dialect="plus", time_scale=0.05, seed=9) as sim:
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


async def test_a_wait_that_times_out_is_exit_1_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``task ID --wait --wait-timeout`` running out is a failed task (1), not usage (2)."""
    async with Simulator(dialect="plus", time_scale=1.0) as slow:
        async with mjasync.Client(slow.base_url, "key") as mj:
            task_id = (await mj.imagine("a slow fox")).task_id
        assert task_id is not None
        argv = ["task", task_id, "--wait", "--wait-timeout", "0.2", "--base-url", slow.base_url]
        assert await run_cli(*argv, *FAST, "--json") == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"task {task_id} did not finish within 0.2 s" in captured.err
    assert json.loads(captured.out)["ok"] is False


@pytest.fixture
async def failing_server() -> AsyncIterator[str]:
    """A server that answers every request with a 500."""
    async with static_server(500, "internal error") as log:
        yield log[0]


async def test_a_failing_server_during_a_wait_is_one_line_exit_3_and_no_poller_warning(
    failing_server: str,
) -> None:
    """The poller's warnings are the CLI's to show (with -v); the error names the cause.

    A real process: under pytest a handler on the root logger hides what Python's
    last-resort handler prints for a script.
    """
    argv = [
        sys.executable, "-m", "mjasync", "task", "123", "--wait", "--wait-timeout", "0.3",
        "--base-url", failing_server, "--poll-interval", "0.01", "--attempts", "1",
    ]  # fmt: skip
    result = await anyio.run_process(argv, check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_API, err
    assert err.count("\n") == 1, err
    assert err.startswith("mjasync: error: task 123 did not finish within 0.3 s: ")
    assert "HTTP 500" in err
    assert "polling" not in err


async def test_verbose_shows_the_library_log_and_quiet_does_not(
    failing_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-v`` prints the mjasync logger's DEBUG records (retries here); without it, nothing."""
    argv = ["task", "123", "--base-url", failing_server, "--attempts", "2"]
    assert await run_cli(*argv) == EXIT_API
    quiet = capsys.readouterr().err
    assert quiet.count("\n") == 1
    assert await run_cli(*argv, "-v") == EXIT_API
    loud = capsys.readouterr().err
    assert "mjasync DEBUG retrying GET http://" in loud
    assert "/mj/task/123/fetch in " in loud
    assert loud.strip().splitlines()[-1] == quiet.strip()


async def test_action_takes_a_mask_and_errors_name_the_flags(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--mask FILE`` serves Vary (Region); a missing input is named as a flag, not prompt=."""
    common = ["--base-url", sim.base_url, "--json", *FAST]
    assert await run_cli("imagine", "a cat", "--upscale", "U1", *common) == EXIT_OK
    upscale = json.loads(capsys.readouterr().out)["actions"]["U1"]["id"]

    assert await run_cli("action", upscale, "vary_region", *common) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "needs --mask FILE" in err
    assert "mask=" not in err
    assert await run_cli("action", upscale, "custom_zoom", *common) == EXIT_USAGE
    err = capsys.readouterr().err
    assert 'needs --prompt containing "--zoom <1..2>", e.g. --prompt "a red fox --zoom 1.5"' in err
    assert "prompt=" not in err
    assert sim.requests["POST /mj/submit/action"] == 1  # only the U1 above

    mask = tmp_path / "mask.png"
    mask.write_bytes(png(2, pixel=b"\xff"))
    code = await run_cli("action", upscale, "vary_region", "--mask", str(mask), *common)
    assert code == EXIT_OK
    assert json.loads(capsys.readouterr().out)["task"]["status"] == "SUCCESS"
    assert sim.requests["POST /mj/submit/modal"] == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["batch", "f", "--out", "o", "--concurrency", "abc"],
            "must be a positive integer, got 'abc'",
        ),
        (["batch", "f", "--out", "o", "--concurrency", "0"], "must be a positive integer, got '0'"),
        (["task", "1", "--attempts", "1.5"], "must be a positive integer, got '1.5'"),
        (["task", "1", "--timeout", "abc"], "must be a positive number of seconds, got 'abc'"),
        (["task", "1", "--wait-timeout", "-1"], "must be a positive number of seconds, got '-1'"),
        (["task", "1", "--poll-interval", "nan"], "must be a positive number of seconds"),
    ],
)
def test_numeric_flags_say_what_they_need(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad number is one line naming the flag and the kind of number it takes."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err


async def test_a_bad_jobs_file_is_refused_whole_listing_every_line(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing image, U9, a typo: exit 2, each bad line on its own line, nothing sent."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"prompt": "a fox", "actions": ["U1"]}\n'
        '{"prompt": "a lighthouse", "images": ["missing.png"]}\n'
        '{"prompt": "a crane", "actions": ["U9"]}\n'
        '{"prompt": "an owl", "actions": ["upscale_subtel"]}\n'
    )
    out = tmp_path / "out"
    code = await run_cli("batch", str(jobs), "--out", str(out), "--base-url", sim.base_url)
    assert code == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "mjasync: error: 3 problems in the jobs; nothing was submitted"
    assert [line.split(":")[1] for line in err[1:]] == ["2", "3", "4"]
    assert "did you mean upscale_subtle?" in err[3]
    assert sum(sim.requests.values()) == 0
    assert not out.exists()

    assert await run_cli("batch", str(jobs), "--out", str(out), "--actions", "U0") == EXIT_USAGE
    assert "--actions: no button is called 'U0'" in capsys.readouterr().err

    # The same file fixed, saved with a BOM as Windows editors do: it runs.
    jobs.write_bytes(
        b"\xef\xbb\xbf" + b'{"prompt": "a fox", "actions": ["U1"]}\n{"prompt": "an owl"}\n'
    )
    code = await run_cli("batch", str(jobs), "--out", str(out), "--base-url", sim.base_url, *FAST)
    assert code == EXIT_OK
    assert "2 of 2 jobs done" in capsys.readouterr().out


def test_the_plain_display_prints_a_heartbeat_of_what_it_waits_on() -> None:
    """Without a terminal, a quiet wait still prints what is pending, and why."""
    err = io.StringIO()
    display = BulkDisplay(Out(False, io.StringIO(), err), 3, heartbeat=0.0)
    fox, owl = Job(key="fox", prompt="a fox", line=1), Job(key="owl", prompt="an owl", line=2)
    display.tick()
    assert err.getvalue() == ""  # nothing pending: nothing to say
    display(BulkEvent("task_submitted", fox, "imagine", message="1"))
    running = mjasync.Task(id="1", status="IN_PROGRESS", progress=40)
    display(BulkEvent("task_progress", fox, "imagine", task=running))
    display(BulkEvent("task_submitted", owl, "imagine", message="2"))
    display(
        BulkEvent(
            "backoff", owl, "U1", message="server queue full (QueueFullError)", delay=4.0, limit=2
        )
    )
    assert err.getvalue().splitlines()[-1] == "backing off 4s: server queue full (QueueFullError)"
    display.tick()
    line = err.getvalue().splitlines()[-1]
    assert line.startswith("waiting on 2 tasks (1 in queue, 1 running); 1 submit waiting for room")
    assert "backing off 4s: server queue full" in line
    display(BulkEvent("job_failed", owl, message="imagine: it broke"))
    assert "[1/3] failed owl (line 2): imagine: it broke" in err.getvalue()


def test_the_live_display_fits_a_short_terminal_with_its_status_line_on_top() -> None:
    """Eight task rows in a six-line terminal: status, jobs bar, what fits, and a count."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, height=6, width=100)
    out = Out(False, io.StringIO(), io.StringIO())
    with BulkDisplay(out, 8, console=console) as display:
        for number in range(8):
            job = Job(key=f"job{number}", prompt="p")
            display(BulkEvent("task_submitted", job, "imagine", message=str(number)))
        progress = display._progress
        lines = console.render_lines(progress.get_renderable(), console.options, pad=False)
    text = ["".join(segment.text for segment in line).rstrip() for line in lines]
    assert text[0].startswith("waiting on 8 tasks (8 in queue, 0 running)")
    assert "jobs" in text[1]
    assert text[-1].strip() == "... and 6 more tasks in flight"
    assert len(text) <= 6


def test_the_demo_output_folder_is_git_ignored() -> None:
    """``mjasync demo`` writes into the repository when run from a clone; git ignores it."""
    default = build_parser().parse_args(["demo"]).out
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text().splitlines()
    assert f"{default}/" in ignored


def test_simulator_help_is_shown_under_the_cli_name(capsys: pytest.CaptureFixture[str]) -> None:
    """``mjasync simulator --help`` is the simulator's help, named as the user typed it."""
    assert main(["simulator", "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("usage: mjasync simulator")
    assert "--time-scale" in text
