"""The bulk runner and its input parsing, end to end against the in-process simulator."""

from __future__ import annotations

import inspect
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _shared import BULK_FAST as FAST
from _shared import FAST_POLL

import mjasync
from mjasync import ConnectError, Request, RequestTimeoutError, Response
from mjasync.bulk import (
    BulkEvent,
    BulkRunner,
    InputError,
    Job,
    load_jobs,
    parse_actions,
    parse_jobs,
    run_bulk,
)
from mjasync.simulator import Faults, Simulator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Enough of a PNG for every check made before sending: the signature and an IHDR.
TINY_PNG = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + bytes(17) + PNG_IEND


def _complete_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_IEND)


@pytest.fixture
async def mj(sim: Simulator) -> AsyncIterator[mjasync.Client]:
    """A client that polls the simulator every few milliseconds."""
    async with mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as client:
        yield client


# -- input -------------------------------------------------------------------------------


def test_plain_text_lines_become_jobs_with_stable_keys() -> None:
    """One prompt a line; comments and blanks skipped; keys hash the line, repeats numbered."""
    lines = ["# my prompts", "a fox", "", "a wolf", "a fox"]
    jobs = parse_jobs(lines)
    assert [job.prompt for job in jobs] == ["a fox", "a wolf", "a fox"]
    assert [job.line for job in jobs] == [2, 4, 5]
    assert jobs[2].key == f"{jobs[0].key}-2"
    assert parse_jobs(lines) == jobs


def test_jsonl_jobs_carry_images_actions_and_keys() -> None:
    """JSONL lines give prompt, images, actions and an explicit key."""
    jobs = parse_jobs(
        [
            '{"prompt": "a fox", "actions": ["u1", "U3"], "key": "fox"}',
            '{"prompt": "a wolf", "images": ["https://x/y.png"], "actions": "all"}',
            '{"prompt": "a hare"}',
        ]
    )
    assert jobs[0] == Job(key="fox", prompt="a fox", actions=("U1", "U3"), line=1)
    assert jobs[1].images == ("https://x/y.png",)
    assert jobs[1].actions == ("U1", "U2", "U3", "U4")
    assert jobs[2].actions is None


def test_bad_jsonl_lines_are_reported_with_line_numbers() -> None:
    """Every problem names its line; nothing runs until the file is right."""
    with pytest.raises(InputError) as caught:
        parse_jobs(
            [
                '{"prompt": "ok", "key": "a"}',
                '{"prompt": "dup", "key": "a"}',
                "{not json",
                '{"prompt": ""}',
                '{"prompt": "x", "colour": "red"}',
            ],
            name="jobs.jsonl",
        )
    message = str(caught.value)
    for expected in (
        "jobs.jsonl:2: key 'a' is already used on line 1",
        "jobs.jsonl:3: not valid JSON",
        "jobs.jsonl:4: prompt must be a non-empty string",
        "jobs.jsonl:5: unknown field(s) colour",
    ):
        assert expected in message


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    """A file with no prompts is a user error, not a successful run of nothing."""
    path = tmp_path / "jobs.txt"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="no jobs"):
        load_jobs(path)
    with pytest.raises(InputError, match="no such file"):
        load_jobs(tmp_path / "missing.jsonl")


def test_relative_image_paths_resolve_against_the_input_file(tmp_path: Path) -> None:
    """``"images": ["ref.png"]`` means the file next to the jobs file, not the cwd."""
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"prompt": "a fox", "images": ["ref.png", "https://h/i.png"]}\n')
    (tmp_path / "ref.png").write_bytes(TINY_PNG)
    (job,) = load_jobs(path)
    assert job.images == (str(tmp_path / "ref.png"), "https://h/i.png")


def test_parse_actions_accepts_lists_all_and_lowercase() -> None:
    """``--actions`` takes ``U1,U2``, ``all``, ``none`` and lower case; duplicates collapse."""
    assert parse_actions("u1, U2,U1") == ("U1", "U2")
    assert parse_actions("all") == ("U1", "U2", "U3", "U4")
    assert parse_actions("none") == ()
    assert parse_actions(["REROLL", "v2", "🔄"]) == ("reroll", "V2")


def test_parse_actions_refuses_every_name_a_grid_cannot_have() -> None:
    """U9, a typo and a button of an upscaled image are all named in one error."""
    with pytest.raises(mjasync.InvalidRequestError) as caught:
        parse_actions("U1,U9,upscale_subtel,vary_region")
    message = str(caught.value)
    assert "'U9'" in message
    assert "did you mean upscale_subtle?" in message
    assert "'vary_region' is a button of another kind of task" in message
    assert "U1..U4, V1..V4 or reroll" in message


# -- running -----------------------------------------------------------------------------


async def test_every_job_is_imagined_upscaled_and_downloaded_once(
    sim: Simulator, mj: mjasync.Client, tmp_path: Path
) -> None:
    """Five jobs with U1,U2: one imagine each, one action per button, complete PNGs."""
    events: list[BulkEvent] = []
    jobs = parse_jobs([f"a fox, number {i}" for i in range(5)])
    report = await run_bulk(
        mj, jobs, tmp_path, actions="U1,U2", concurrency=3, on_event=events.append, **FAST
    )
    assert report.ok, report.to_dict()
    assert len(report.done) == 5
    assert not report.skipped
    assert sim.requests["POST /mj/submit/imagine"] == 5
    assert sim.requests["POST /mj/submit/action"] == 10
    assert len(report.files) == 15
    assert all(_complete_png(path) for path in report.files)
    on_disk = sorted(p.name for p in tmp_path.glob("*.png"))  # noqa: ASYNC240 - a test check
    assert on_disk == sorted(p.name for p in report.files)
    assert report.requests == mj.requests_sent
    tags = {task.state for task in sim.tasks.values()}
    for job in jobs:
        for step in ("imagine", "U1", "U2"):
            prefix = f"mjasync:{report.run_id}:{job.key}:{step}:"
            assert any(tag and tag.startswith(prefix) for tag in tags)
    kinds = {event.kind for event in events}
    assert {"job_started", "task_submitted", "task_progress", "downloaded", "job_done"} <= kinds


async def test_a_rerun_skips_finished_jobs_without_a_single_submit(
    sim: Simulator, mj: mjasync.Client, tmp_path: Path
) -> None:
    """Running the same batch again sends no submit and downloads nothing."""
    jobs = parse_jobs(["a fox", "a wolf"])
    first = await run_bulk(mj, jobs, tmp_path, actions="U1", **FAST)
    sim.reset_counters()
    second = await run_bulk(mj, jobs, tmp_path, actions="U1", **FAST)
    assert second.ok
    assert set(second.skipped) == {job.key for job in jobs}
    assert second.run_id == first.run_id
    assert sum(sim.requests.values()) == 0
    assert second.requests == 0
    assert second.requests_total == first.requests


async def test_new_buttons_on_a_finished_job_press_only_those(
    sim: Simulator, mj: mjasync.Client, tmp_path: Path
) -> None:
    """Adding U3 later re-attaches the grid (a poll) and submits only the U3 action."""
    jobs = parse_jobs(["a fox"])
    await run_bulk(mj, jobs, tmp_path, actions="U1", **FAST)
    sim.reset_counters()
    report = await run_bulk(mj, jobs, tmp_path, actions="U1,U3", **FAST)
    assert report.ok
    assert sim.requests["POST /mj/submit/imagine"] == 0
    assert sim.requests["POST /mj/submit/action"] == 1
    assert len(list(tmp_path.glob("*.png"))) == 3  # noqa: ASYNC240 - a test check


async def test_queue_full_pushes_back_and_every_job_still_finishes(tmp_path: Path) -> None:
    """A one-slot server with a one-task queue refuses most submits; none is lost or doubled."""
    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=3, slots=1, queue_size=1) as sim,
        # The client's default queue_full_wait: the runner bypasses its gate.
        mjasync.Client(
            sim.base_url, "key", poll=FAST_POLL, retry=mjasync.RetryPolicy(attempts=1)
        ) as mj,
    ):
        events: list[BulkEvent] = []
        jobs = parse_jobs([f"a hare {i}" for i in range(6)])
        report = await run_bulk(
            mj, jobs, tmp_path, actions="U1,U2", concurrency=6, on_event=events.append, **FAST
        )
        assert report.ok, report.to_dict()
        created = list(sim.tasks.values())
        assert len(created) == 6 * 3
        assert any(event.kind == "backoff" for event in events)
        with sqlite3.connect(report.journal) as db:
            refused = db.execute("SELECT COUNT(*) FROM events WHERE what = 'never_sent'").fetchone()
        assert refused[0] > 0


async def test_a_concurrency_far_above_what_the_server_admits_adapts_instead_of_pausing(
    tmp_path: Path,
) -> None:
    """Queue-full answers cut the in-flight limit; retries follow finished tasks, not timers.

    The server admits two tasks (one slot, one queue place) and the run asks for twelve
    at once. A refusal while this run's tasks are running waits for one of them to
    finish (``delay`` 0), never for the (here deliberately huge) timed back-off.
    """
    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=5, slots=1, queue_size=1) as sim,
        # The client's default queue_full_wait: the runner bypasses its gate.
        mjasync.Client(
            sim.base_url, "key", poll=FAST_POLL, retry=mjasync.RetryPolicy(attempts=1)
        ) as mj,
    ):
        events: list[BulkEvent] = []
        jobs = parse_jobs([f"a wren {i}" for i in range(12)])
        options = {**FAST, "backoff": 30.0, "max_backoff": 60.0}
        report = await run_bulk(
            mj, jobs, tmp_path, concurrency=12, on_event=events.append, **options
        )
        assert report.ok, report.to_dict()
        assert len(sim.tasks) == 12
    backoffs = [event for event in events if event.kind == "backoff"]
    assert backoffs, "the server never pushed back: the test lost its point"
    assert all(event.delay == 0 for event in backoffs)
    assert all(1 <= event.limit <= 12 for event in backoffs)
    # It learned the server admits far fewer: cut at least twice from 12 (6, then <= 3).
    # Whether a third cut comes depends on which round late refusals were sent in, so
    # "<= 2" failed about one run in five (on main too).
    assert min(event.limit for event in backoffs) <= 3
    assert any(event.kind == "task_queued" for event in events)
    # The first burst is refused (free, unpaid answers); after it, few more are.
    assert sim.requests["POST /mj/submit/imagine"] - 12 < 2 * 12


class _Flaky(mjasync.AiohttpTransport):
    """Fails chosen imagine submits: before sending (connect) or after (answer lost).

    The first *after* imagine submits go through untouched: a run stops at a failure
    that comes before the server ever answered (see test_unreachable_* below).
    """

    def __init__(self, *, connect_failures: int = 0, lost_answers: int = 0, after: int = 0) -> None:
        super().__init__()
        self.connect_failures = connect_failures
        self.lost_answers = lost_answers
        self.after = after

    async def send(self, request: Request) -> Response:
        if request.url.endswith("/submit/imagine"):
            if self.after:
                self.after -= 1
                return await super().send(request)
            if self.connect_failures:
                self.connect_failures -= 1
                raise ConnectError("could not connect: refused")
            if self.lost_answers:
                self.lost_answers -= 1
                await super().send(request)
                raise RequestTimeoutError("no response in time")
        return await super().send(request)


async def test_a_submit_that_never_left_is_resent(sim: Simulator, tmp_path: Path) -> None:
    """A connect failure proves non-delivery: the runner sends again, one task per job."""
    transport = _Flaky(connect_failures=2, after=1)
    retry = mjasync.RetryPolicy(attempts=1)
    async with mjasync.Client(
        sim.base_url, "key", poll=FAST_POLL, retry=retry, transport=transport
    ) as mj:
        report = await run_bulk(
            mj, parse_jobs(["a fox", "a wolf"]), tmp_path, concurrency=1, **FAST
        )
    assert report.ok
    assert transport.connect_failures == 0
    assert len(sim.tasks) == 2


async def test_a_lost_answer_is_unknown_and_never_silently_resent(
    sim: Simulator, tmp_path: Path
) -> None:
    """The server made a task but the answer was lost: report unknown, don't pay twice."""
    jobs = parse_jobs(["a fox", "a wolf"])
    async with mjasync.Client(
        sim.base_url, "key", poll=FAST_POLL, transport=_Flaky(lost_answers=1, after=1)
    ) as mj:
        report = await run_bulk(mj, jobs, tmp_path, recover=False, concurrency=1, **FAST)
    assert len(report.unknown) == 1
    assert len(report.done) == 1
    (reason,) = report.unknown.values()
    assert "--resubmit-unknown" in reason
    assert len(sim.tasks) == 2
    async with mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj:
        again = await run_bulk(mj, jobs, tmp_path, recover=False, **FAST)
        assert again.unknown == report.unknown
        assert len(sim.tasks) == 2
        forced = await run_bulk(mj, jobs, tmp_path, recover=False, resubmit_unknown=True, **FAST)
    assert forced.ok
    assert len(sim.tasks) == 3  # the explicit flag paid for the lost task once more


async def test_a_lost_answer_is_recovered_by_its_state_tag(sim: Simulator, tmp_path: Path) -> None:
    """With GET /mj/task/list, the task behind a lost answer is found by state and finished."""
    jobs = parse_jobs(["a fox", "a wolf"])
    async with mjasync.Client(
        sim.base_url, "key", poll=FAST_POLL, transport=_Flaky(lost_answers=1, after=1)
    ) as mj:
        report = await run_bulk(mj, jobs, tmp_path, concurrency=1, **FAST)
    assert report.ok, report.to_dict()
    assert len(sim.tasks) == 2  # recovered, not resubmitted
    assert sim.requests["POST /mj/submit/imagine"] == 2
    assert sim.requests["GET /mj/task/list"] >= 1
    states = sorted(task.state or "" for task in sim.tasks.values())
    assert all(state.startswith("mjasync:") for state in states)


async def test_a_failed_task_fails_its_job_and_is_retried_only_on_request(
    mj: mjasync.Client, sim: Simulator, tmp_path: Path
) -> None:
    """FAILURE is final for the job; a rerun reports it again; --retry-failed resubmits."""
    sim.inject("POST /mj/submit/imagine", "task_failure", reason="Job action restricted")
    jobs = parse_jobs(["a fox"])
    report = await run_bulk(mj, jobs, tmp_path, **FAST)
    (reason,) = report.failed.values()
    assert "Job action restricted" in reason
    again = await run_bulk(mj, jobs, tmp_path, **FAST)
    assert again.failed
    assert sim.requests["POST /mj/submit/imagine"] == 1
    retried = await run_bulk(mj, jobs, tmp_path, retry_failed=True, **FAST)
    assert retried.ok
    assert sim.requests["POST /mj/submit/imagine"] == 2


async def test_a_retried_step_whose_answer_is_lost_recovers_the_new_task(
    sim: Simulator, tmp_path: Path
) -> None:
    """After --retry-failed, a lost answer is matched to the new task, never the failed one."""
    sim.inject("POST /mj/submit/imagine", "task_failure", reason="Job action restricted")
    jobs = parse_jobs(["a fox"])
    async with mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj:
        first = await run_bulk(mj, jobs, tmp_path, **FAST)
    assert first.failed
    (failed_task,) = sim.tasks.values()
    # A job that is answered first (the server is known to be up), then the retried one.
    jobs = [*parse_jobs(["a wolf"]), *jobs]
    async with mjasync.Client(
        sim.base_url, "key", poll=FAST_POLL, transport=_Flaky(lost_answers=1, after=1)
    ) as mj:
        retried = await run_bulk(mj, jobs, tmp_path, retry_failed=True, concurrency=1, **FAST)
    assert retried.ok, retried.to_dict()
    assert len(sim.tasks) == 3
    (new_task,) = (
        task for task in sim.tasks.values() if task.id != failed_task.id and "fox" in task.prompt
    )
    assert new_task.state != failed_task.state
    with sqlite3.connect(retried.journal) as db:
        (task_id,) = db.execute(
            "SELECT task_id FROM steps WHERE step = 'imagine' AND job_key = ?", (jobs[1].key,)
        ).fetchone()
    assert task_id == new_task.id


async def test_a_button_no_grid_has_is_refused_before_anything_is_sent(
    mj: mjasync.Client, sim: Simulator, tmp_path: Path
) -> None:
    """``actions="U9"`` or a job naming U9: refused at once, not after a paid imagine."""
    with pytest.raises(mjasync.InvalidRequestError, match="U9"):
        await run_bulk(mj, parse_jobs(["a fox"]), tmp_path, actions="U9", **FAST)
    jobs = [Job(key="fox", prompt="a fox"), Job(key="owl", prompt="an owl", actions=("U9",))]
    with pytest.raises(InputError, match="job owl: actions: no button is called 'U9'"):
        await run_bulk(mj, jobs, tmp_path, **FAST)
    assert sum(sim.requests.values()) == 0
    assert not (tmp_path / "mjasync-journal.sqlite3").exists()


async def test_a_jobs_file_with_bad_lines_is_refused_whole_listing_each_line(
    mj: mjasync.Client, sim: Simulator, tmp_path: Path
) -> None:
    """Missing, unreadable or non-image files and bad buttons: every line named, nothing sent."""
    (tmp_path / "ok.png").write_bytes(TINY_PNG)
    (tmp_path / "notes.png").write_text("not an image")
    path = tmp_path / "jobs.jsonl"
    lines = [
        {"prompt": "a fox", "images": ["ok.png"], "actions": ["U1"]},
        {"prompt": "a lighthouse", "images": ["missing.png"]},
        {"prompt": "a crane", "actions": ["U9"]},
        {"prompt": "an owl", "actions": ["upscale_subtel"]},
        {"prompt": "a robot", "images": ["notes.png"]},
        {"prompt": "a heron", "images": ["https://example.invalid/h.png"]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(InputError) as caught:
        await run_bulk(mj, path, tmp_path / "out", **FAST)
    problems = caught.value.problems
    assert [p.removeprefix(f"{path}:").split(":")[0] for p in problems] == ["2", "3", "4", "5"]
    assert "missing.png) no such file" in problems[0]
    assert "no button is called 'U9'" in problems[1]
    assert "did you mean upscale_subtle?" in problems[2]
    assert "notes.png) is not a PNG, JPEG, WEBP or GIF image" in problems[3]
    assert sum(sim.requests.values()) == 0


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM; line 1 is still JSON (or a prompt)."""
    path = tmp_path / "jobs.jsonl"
    path.write_bytes('\ufeff{"prompt": "a fox", "key": "fox"}\n'.encode())
    assert [job.key for job in load_jobs(path)] == ["fox"]
    text = tmp_path / "jobs.txt"
    text.write_bytes("\ufeffa fox\n".encode())
    assert [job.prompt for job in load_jobs(text)] == ["a fox"]
    assert parse_jobs(['\ufeff{"prompt": "a fox"}'])[0].prompt == "a fox"


async def test_a_job_refused_before_sending_reruns_without_retry_failed(
    mj: mjasync.Client, sim: Simulator, tmp_path: Path
) -> None:
    """A failure caught before the submit left costs nothing: the fixed input just reruns."""
    image = tmp_path / "ref.png"
    image.write_bytes(TINY_PNG)
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        '{"prompt": "a fox", "key": "fox"}\n{"prompt": "a hare", "images": ["ref.png"]}\n'
    )

    def vanish(event: BulkEvent) -> None:
        # The file passes the check, then disappears before its job submits.
        if event.kind == "job_started" and event.job.images:
            image.unlink(missing_ok=True)

    report = await run_bulk(mj, path, tmp_path / "out", on_event=vanish, **FAST)
    ((key, reason),) = report.failed.items()
    assert "nothing was sent" in reason
    assert report.lines == {key: 2}
    assert sim.requests["POST /mj/submit/imagine"] == 1
    image.write_bytes(TINY_PNG)
    again = await run_bulk(mj, path, tmp_path / "out", **FAST)
    assert again.ok, again.to_dict()
    assert sim.requests["POST /mj/submit/imagine"] == 2


async def test_a_wrong_api_key_stops_the_run(tmp_path: Path) -> None:
    """Authentication errors end the whole run at once: every job would get the same."""
    async with (
        Simulator(dialect="plus", time_scale=0.002, api_key="right") as sim,
        mjasync.Client(sim.base_url, "wrong", poll=FAST_POLL) as mj,
    ):
        with pytest.raises(mjasync.AuthenticationError):
            await run_bulk(mj, parse_jobs(["a fox", "a wolf", "a hare"]), tmp_path, **FAST)
    with sqlite3.connect(tmp_path / "mjasync-journal.sqlite3") as db:
        (outcome,) = db.execute("SELECT outcome FROM runs").fetchone()
    assert outcome.startswith("stopped: AuthenticationError")


async def test_the_report_serialises_to_json(
    mj: mjasync.Client, tmp_path: Path, sim: Simulator
) -> None:
    """``to_dict`` is what ``--json`` prints: plain JSON types only."""
    report = await run_bulk(mj, parse_jobs(["a fox"]), tmp_path, **FAST)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    assert data["done"] == 1
    assert data["files"]


async def test_faults_on_polls_and_downloads_are_absorbed(tmp_path: Path) -> None:
    """5xx and 429 on reads are retried by the client; the batch still completes."""
    faults = Faults(
        server_error=0.1,
        rate_limit=0.05,
        retry_after=0.01,
        routes=frozenset({"list-by-condition", "images"}),
    )
    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=11, faults=faults) as sim,
        mjasync.Client(
            sim.base_url, "key", poll=FAST_POLL, retry=mjasync.RetryPolicy(attempts=6, backoff=0.01)
        ) as mj,
    ):
        report = await run_bulk(mj, parse_jobs(["a", "b", "c"]), tmp_path, actions="U1", **FAST)
        assert report.ok, report.to_dict()
        assert sim.requests["POST /mj/submit/imagine"] == 3


def test_run_bulk_spells_out_every_runner_option() -> None:
    """``run_bulk`` takes BulkRunner's options as typed keywords, with the same defaults."""
    ours = inspect.signature(run_bulk).parameters
    theirs = inspect.signature(BulkRunner.__init__).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in ours.values())
    options = {n: p for n, p in theirs.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert options
    for name, parameter in options.items():
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert ours[name].default == parameter.default, name
        assert ours[name].annotation == parameter.annotation, name


# -- file names --------------------------------------------------------------------------


async def test_files_are_named_by_job_step_and_task(
    sim: Simulator, mj: mjasync.Client, tmp_path: Path
) -> None:
    """``file_stem(task, prefix="<key>-<step>")``; ``job_files`` lists each job's, in order."""
    jobs = [Job(key="fox", prompt="a fox", actions=("U1", "V2"))]
    report = await run_bulk(mj, jobs, tmp_path, **FAST)
    assert report.ok, report.to_dict()
    with sqlite3.connect(report.journal) as db:
        ids = dict(db.execute("SELECT step, task_id FROM steps WHERE job_key = 'fox'"))
    names = [f"fox-{step}-{ids[step]}.png" for step in ("imagine", "U1", "V2")]
    assert [path.name for path in report.job_files["fox"]] == names
    assert [path.name for path in report.files] == names
    assert mjasync.file_stem(ids["U1"], prefix="fox-U1") == f"fox-U1-{ids['U1']}"
    assert report.to_dict()["job_files"] == {"fox": [str(p) for p in report.job_files["fox"]]}


async def test_files_of_a_journal_from_before_the_new_names_are_found(
    sim: Simulator, mj: mjasync.Client, tmp_path: Path
) -> None:
    """mjasync 0.1 saved ``<key>-<step>.png``: a rerun keeps those files, downloads nothing.

    Whether the journal recorded the old path, or the process died between saving the
    file and recording it.
    """
    jobs = [Job(key="fox", prompt="a fox", actions=("U1",))]
    first = await run_bulk(mj, jobs, tmp_path, **FAST)
    assert first.ok
    journal = first.journal
    with sqlite3.connect(journal) as db:
        for step, path in list(db.execute("SELECT step, path FROM steps")):
            old = tmp_path / f"fox-{step}.png"
            Path(path).rename(old)  # noqa: ASYNC240 - a test set-up
            recorded = str(old) if step == "imagine" else None  # U1: lost in a crash
            db.execute("UPDATE steps SET path = ? WHERE step = ?", (recorded, step))
    sim.reset_counters()
    again = await run_bulk(mj, jobs, tmp_path, **FAST)
    assert again.ok, again.to_dict()
    assert [p.name for p in again.job_files["fox"]] == ["fox-imagine.png", "fox-U1.png"]
    assert not any(route.startswith("GET /sim/images") for route in sim.requests)
    assert sim.requests["POST /mj/submit/imagine"] == 0
    assert sim.requests["POST /mj/submit/action"] == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["fox-U1.png", "fox-imagine.png"]  # noqa: ASYNC240 - a test check
