"""The bulk journal: durable transitions, stable run id, input consistency checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from mjasync.bulk import Journal, JournalError


def _job(key: str, prompt: str = "a fox", actions: list[str] | None = None) -> tuple:
    spec = {"prompt": prompt, "images": [], "actions": actions or []}
    return (key, 1, prompt, spec)


async def test_run_id_is_created_once_and_kept(tmp_path: Path) -> None:
    """Reopening a journal keeps its run id, so state tags match across resumes."""
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path) as first:
        run_id = first.run_id
    async with await Journal.open(path) as second:
        assert second.run_id == run_id
    assert len(run_id) == 12


async def test_transitions_are_committed_in_order(tmp_path: Path) -> None:
    """Each transition is visible to another connection at once: intent before outcome."""
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path) as journal:
        await journal.begin_run()
        await journal.sync_jobs([_job("k1")])
        attempt = await journal.step_sending("k1", "imagine", "mjasync:x:k1:imagine", requests=0)
        assert attempt == 1
        with sqlite3.connect(path) as other:
            row = other.execute("SELECT status, task_id FROM steps").fetchone()
        assert row == ("sending", None)
        await journal.set_step("k1", "imagine", "accepted", task_id="42", requests=1)
        await journal.set_step("k1", "imagine", "success", requests=3)
        await journal.set_path("k1", "imagine", str(tmp_path / "k1-imagine.png"))
        await journal.set_job("k1", "done")
        await journal.end_run(5, "ok")
        records = await journal.jobs()
    step = records["k1"].steps["imagine"]
    assert (step.status, step.task_id, step.attempts) == ("success", "42", 1)
    assert records["k1"].status == "done"
    with sqlite3.connect(path) as other:
        events = [row[0] for row in other.execute("SELECT what FROM events ORDER BY id")]
        runs = other.execute("SELECT requests, outcome FROM runs").fetchall()
    assert events.index("sending") < events.index("accepted") < events.index("success")
    assert runs == [(5, "ok")]


async def test_a_second_send_counts_attempts_and_clears_the_old_outcome(tmp_path: Path) -> None:
    """Resending after a provable non-delivery bumps attempts and forgets the old error."""
    async with await Journal.open(tmp_path / "j.sqlite3") as journal:
        await journal.begin_run()
        await journal.sync_jobs([_job("k1")])
        await journal.step_sending("k1", "imagine", "t", requests=0)
        await journal.set_step("k1", "imagine", "never_sent", requests=1, error="queue full")
        assert await journal.step_sending("k1", "imagine", "t", requests=1) == 2
        step = (await journal.jobs())["k1"].steps["imagine"]
    assert (step.status, step.error) == ("sending", None)


async def test_a_changed_prompt_under_the_same_key_is_refused(tmp_path: Path) -> None:
    """A key that now names another prompt would re-attach the wrong tasks: refuse."""
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path) as journal:
        await journal.sync_jobs([_job("k1", "a fox")])
    async with await Journal.open(path) as journal:
        with pytest.raises(JournalError, match="different prompt"):
            await journal.sync_jobs([_job("k1", "a wolf")])
        # New actions for a known job are fine: they only add steps.
        records = await journal.sync_jobs([_job("k1", "a fox", ["U1"])])
    assert records["k1"].status == "pending"


async def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    """Pointing --journal at some other file fails with one clear message."""
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not sqlite\n" * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        await Journal.open(path)


async def test_writes_finish_even_when_the_caller_is_cancelled(tmp_path: Path) -> None:
    """A cancelled caller still gets its write committed: the journal never half-knows."""
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path) as journal:
        await journal.sync_jobs([_job("k1")])
        with anyio.CancelScope() as scope:
            scope.cancel()
            await journal.step_sending("k1", "imagine", "t", requests=0)
        records = await journal.jobs()
    assert records["k1"].steps["imagine"].status == "sending"


async def test_one_journal_serves_one_run_at_a_time(tmp_path: Path) -> None:
    """A second runner on the same journal is refused: it would misjudge live 'sending' rows."""
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path):
        with pytest.raises(JournalError, match="another mjasync run"):
            await Journal.open(path)
    async with await Journal.open(path) as again:
        assert again.run_id


async def test_a_journal_path_that_cannot_be_opened_is_a_journal_error(tmp_path: Path) -> None:
    """A journal path sqlite cannot open (a directory) raises JournalError and frees the lock."""
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(JournalError, match="not a usable journal"):
        await Journal.open(folder)
    # The failed open released its lock: a second try fails the same way, not as "in use".
    with pytest.raises(JournalError, match="not a usable journal"):
        await Journal.open(folder)
