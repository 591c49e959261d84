"""What the CLI says when the server is wrong, gone or refuses the key (#9.1-#9.4).

Each failure is one line saying what happened with the whole URL, then (for a bad key) the
header that was sent and the ``--auth`` to try, in the CLI's own flags; exit code 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _servers import WEB_PAGE, closed_port, static_server
from _shared import CLI_FAST as FAST
from _shared import run_cli

from mjasync.cli import EXIT_API, EXIT_OK
from mjasync.simulator import Simulator

KEY = "sk-secret-4711"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MJ_* variables must not leak into these tests."""
    for name in ("MJ_BASE_URL", "MJ_API_KEY", "MJ_AUTH"):
        monkeypatch.delenv(name, raising=False)


# -- #9.3: authentication ------------------------------------------------------------------


AUTH_CASES = [
    (
        "oss",
        [],
        [
            "no API key was sent: pass --api-key or set MJ_API_KEY",
            "an empty 401 is how novicezk's midjourney-proxy refuses",
            "add --auth mj-api-secret (or MJ_AUTH=mj-api-secret)",
        ],
    ),
    (
        "oss",
        ["--api-key", KEY],
        [
            'the key was sent as "Authorization: Bearer <key>" (--auth bearer, the default)',
            "try --auth mj-api-secret (or MJ_AUTH=mj-api-secret)",
        ],
    ),
    (
        "oss",
        ["--api-key", KEY, "--auth", "authorization"],
        [
            'the key was sent as "Authorization: <key>" (--auth authorization)',
            "try --auth mj-api-secret",
        ],
    ),
    (
        "trueai",
        [],
        [
            "answered HTTP 401: Authorization header missing.",
            "no API key was sent: pass --api-key or set MJ_API_KEY",
            "add --auth authorization (or MJ_AUTH=authorization)",
        ],
    ),
    (
        "trueai",
        ["--api-key", KEY, "--auth", "bearer"],
        [
            'the key was sent as "Authorization: Bearer <key>" (--auth bearer)',
            "try --auth authorization or --auth mj-api-secret",
        ],
    ),
    (
        "newapi",
        ["--api-key", "sk-wrong-0815"],
        [
            "this is new-api's refusal",
            "the key went where this server looks for it: check the key itself",
        ],
    ),
    (
        "newapi",
        [],
        ["no API key was sent: pass --api-key or set MJ_API_KEY"],
    ),
]


@pytest.mark.parametrize(
    ("dialect", "flags", "expected"),
    AUTH_CASES,
    ids=[
        "oss-no-key",
        "oss-bearer",
        "oss-authorization",
        "trueai-no-key",
        "trueai-bearer",
        "newapi-wrong-key",
        "newapi-no-key",
    ],
)
async def test_an_auth_failure_names_the_header_sent_and_the_flag_to_try(
    dialect: str, flags: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No key, a wrong key, the right key sent the wrong way: each says what to do."""
    async with Simulator(dialect=dialect, time_scale=0.002, api_key=KEY) as sim:  # type: ignore[arg-type]
        code = await run_cli("imagine", "a fox", "--base-url", sim.base_url, *flags)
    assert code == EXIT_API
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith(
        f"mjasync: error: authentication failed: POST {sim.base_url}/mj/submit/imagine "
        "answered HTTP 401"
    )
    assert all(line.startswith("  ") for line in lines[1:])
    for needle in expected:
        assert needle in err, err
    assert KEY not in err
    assert "auth=" not in err  # the library's parameter, not a flag a CLI user has
    if dialect == "newapi" and not flags:
        assert "--auth" not in err  # bearer is already what is sent


async def test_the_auth_hint_names_mj_auth_when_that_chose_the_style(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A style chosen by MJ_AUTH is reported as such, not as a flag the user never typed."""
    monkeypatch.setenv("MJ_AUTH", "authorization")
    async with Simulator(dialect="oss", time_scale=0.002, api_key=KEY) as sim:
        code = await run_cli("task", "1", "--base-url", sim.base_url, "--api-key", KEY, "--json")
    assert code == EXIT_API
    captured = capsys.readouterr()
    assert '"Authorization: <key>" (MJ_AUTH=authorization)' in captured.err
    data = json.loads(captured.out)
    assert data["auth"] == {
        "sent": "authorization",
        "header": "Authorization",
        "suggested": ["mj-api-secret"],
    }
    assert any("--auth mj-api-secret" in hint for hint in data["hints"])


async def test_the_right_style_works_where_the_hint_pointed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Following the hint on trueai (raw key in Authorization) gets the task through."""
    async with Simulator(dialect="trueai", time_scale=0.002, api_key=KEY) as sim:
        argv = ["imagine", "a fox", "--base-url", sim.base_url, "--api-key", KEY, *FAST]
        assert await run_cli(*argv, "--auth", "authorization") == EXIT_OK
    assert "SUCCESS" in capsys.readouterr().out


async def test_a_batch_refused_for_its_key_stops_in_a_few_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The auth hint, then how to go on; no traceback (it was an ExceptionGroup), exit 3."""
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a fox\na wolf\n")
    async with Simulator(dialect="trueai", time_scale=0.002, api_key=KEY) as sim:
        argv = ["batch", str(jobs), "--out", str(tmp_path / "out"), "--base-url", sim.base_url]
        assert await run_cli(*argv, "--api-key", KEY) == EXIT_API
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mjasync: error: authentication failed: POST ")
    assert "  try --auth authorization or --auth mj-api-secret (or MJ_AUTH=authorization)" in err
    assert err[-1].startswith("  the batch stopped; rerun the same command once fixed")
    assert not any("Traceback" in line for line in err)


# -- #9.4 and #9.1: a base URL with no midjourney-proxy ------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "content_type", "shape"),
    [
        (404, "404 page not found", "text/plain", "HTTP 404 with text, not the proxy's JSON"),
        (200, WEB_PAGE, "text/html", "HTTP 200 with a web page"),
    ],
    ids=["404-everywhere", "200-web-page"],
)
async def test_a_base_url_without_a_proxy_is_one_line_naming_the_url(
    status: int, text: str, content_type: str, shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``task 123``: "no midjourney-proxy API at <url>/mj", never "task 123 not found"."""
    async with static_server(status, text, content_type) as log:
        base = log[0]
        assert await run_cli("task", "123", "--base-url", base) == EXIT_API
        err = capsys.readouterr().err
        # --wait fails at once too, not after the whole wait of quiet polling.
        wait = ["--wait", "--wait-timeout", "5"]
        assert await run_cli("task", "123", *wait, "--base-url", base) == EXIT_API
        waited = capsys.readouterr().err
        assert await run_cli("seed", "123", "--base-url", base) == EXIT_API
        seed = capsys.readouterr().err
    assert err == (
        f"mjasync: error: no midjourney-proxy API at {base}/mj: GET {base}/mj/task/123/fetch "
        f"answered {shape}; check --base-url or MJ_BASE_URL\n"
    )
    assert waited == err
    assert "not found" not in err
    assert seed.startswith("mjasync: error: this server has no GET /mj/task/123/image-seed: ")
    assert seed.count("\n") == 1


async def test_a_batch_against_a_wrong_url_stops_and_reruns_without_a_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 with the URL hint; pointed at the proxy, the same command does every job."""
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a fox\na wolf\na hare\n")
    argv = ["batch", str(jobs), "--out", str(tmp_path / "out"), "--attempts", "1"]
    async with static_server(404, "404 page not found") as log:
        assert await run_cli(*argv, "--base-url", log[0]) == EXIT_API
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"mjasync: error: no midjourney-proxy API at {log[0]}/mj: POST ")
    assert err[1].startswith("  the batch stopped; rerun the same command once fixed")
    assert len(err) == 2  # no per-job "unknown" lines, no push-back lines
    async with Simulator(dialect="plus", time_scale=0.002, seed=1) as sim:
        assert await run_cli(*argv, "--base-url", sim.base_url, *FAST) == EXIT_OK
        assert sim.requests["POST /mj/submit/imagine"] == 3
    assert "3 of 3 jobs done, 0 failed, 0 unknown" in capsys.readouterr().out


# -- #9.2: a host that cannot be reached -----------------------------------------------------


async def test_an_unreachable_host_is_named_with_its_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """imagine and batch alike: "cannot reach HOST: connection refused", exit 3, no back-off."""
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    assert await run_cli("imagine", "a fox", "--base-url", base, "--attempts", "1") == EXIT_API
    err = capsys.readouterr().err
    assert err.startswith(f"mjasync: error: cannot reach 127.0.0.1:{port}: connection refused (")
    assert err.count("\n") == 1
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a fox\na wolf\n")
    argv = ["batch", str(jobs), "--out", str(tmp_path / "out"), "--base-url", base]
    assert await run_cli(*argv, "--attempts", "1") == EXIT_API
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"mjasync: error: cannot reach 127.0.0.1:{port}: connection refused")
    assert lines[1:] == ["  check --base-url or MJ_BASE_URL, and that the server is running"]
