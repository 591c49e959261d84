"""The CLI's saved files share one scheme (``file_stem``) and the demo plays every dialect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _shared import CLI_FAST as FAST
from _shared import run_cli

import mjasync
from mjasync.cli import DEMO_DIALECTS, EXIT_OK, build_parser
from mjasync.simulator import DIALECTS, Simulator


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MJ_* variables must not leak into these tests."""
    for name in ("MJ_BASE_URL", "MJ_API_KEY", "MJ_AUTH"):
        monkeypatch.delenv(name, raising=False)


async def test_imagine_action_and_download_name_files_label_then_task_id(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``grid-<id>``, ``U1-<id>``, ``V2-<id>``, and plain ``<id>`` for ``download``."""
    common = ["--base-url", sim.base_url, "--json", *FAST]
    out = tmp_path / "out"
    assert await run_cli("imagine", "a fox", "--upscale", "U1", "--out", str(out), *common) == 0
    data = json.loads(capsys.readouterr().out)
    grid, upscale = data["task"]["id"], data["actions"]["U1"]["id"]
    assert [Path(f).name for f in data["files"]] == [f"grid-{grid}.png", f"U1-{upscale}.png"]

    assert await run_cli("action", grid, "V2", "--out", str(out), *common) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert [Path(f).name for f in data["files"]] == [f"V2-{data['task']['id']}.png"]

    sim.reset_counters()
    assert await run_cli("download", upscale, "--out", str(out), *common) == EXIT_OK
    saved = json.loads(capsys.readouterr().out)["files"]
    assert [Path(f).name for f in saved] == [f"{mjasync.file_stem(upscale)}.png"]
    assert sim.requests["GET /sim/images/{name}"] == 1
    assert await run_cli("download", upscale, "--out", str(out), *common) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["files"] == saved
    assert sim.requests["GET /sim/images/{name}"] == 1  # already saved: not fetched again


def test_the_demo_offers_every_simulator_dialect() -> None:
    """``--dialect`` takes exactly the simulator's dialects; plus is the default."""
    assert sorted(DEMO_DIALECTS) == sorted(DIALECTS)
    assert build_parser().parse_args(["demo"]).dialect == "plus"


@pytest.mark.parametrize(
    "dialect",
    [
        # plus, the default, is test_cli.py's test_demo_runs_end_to_end.
        "trueai",
        "newapi",
        "oss",
    ],
)
async def test_the_demo_runs_in_each_dialect(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mjasync demo --dialect D``: every job done, each file under its job in the table."""
    out = tmp_path / "demo"
    code = await run_cli("demo", "--dialect", dialect, "--out", str(out), "--time-scale", "0.004")
    captured = capsys.readouterr()
    assert f"simulator ({dialect}) listening on http://127.0.0.1:" in captured.err
    assert "6 of 6 jobs done, 0 failed, 0 unknown" in captured.out, captured.out
    assert code == EXIT_OK
    rows = {
        line.split("│")[1].strip(): line.split("│")[-2].strip() for line in _table(captured.out)
    }
    assert rows == {
        "demo-1": "5",
        "demo-2": "5",
        "demo-3": "3",
        "demo-4": "3",
        "demo-5": "1",
        "demo-6": "1",
    }
    assert len(list(out.glob("demo-*-*-*.png"))) == 18


def _table(text: str) -> list[str]:
    """The body rows of the demo's table that start a job (its prompt may wrap)."""
    return [line for line in text.splitlines() if line.startswith("│ demo-")]
