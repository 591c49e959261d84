"""The bulk journal: a SQLite file that records every intent before its side effect.

The whole point is to never pay twice and never lose work. Each submit is written as
``sending`` (committed) before the HTTP request leaves, then ``accepted`` with the task
id, ``never_sent``/``rejected`` when the server provably created nothing, or
``unknown`` when it may have. A rerun reads these rows back: accepted ids are waited on
again, unknown ones are reported and never resubmitted silently.

One connection, used from one dedicated thread: sqlite3 connections are not meant to
hop threads, and a single writer thread also serialises every transaction without a
lock. Each transition is its own committed transaction (WAL, ``synchronous=FULL``), so
a ``kill -9`` or a power cut loses at most the transition that was being written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

import anyio
import attrs

from mjasync import InvalidRequestError

__all__ = ["JobRecord", "JobStatus", "Journal", "JournalError", "StepRecord", "StepStatus"]

_T = TypeVar("_T")

SCHEMA_VERSION: Final = 1

StepStatus = Literal[
    "sending", "accepted", "never_sent", "rejected", "unknown", "success", "failed"
]
"""Where one step of a job stands: the first five describe its submit, the last two
its task (see the constants below)."""

SENDING: Final = "sending"  # intent written, request maybe on the wire
ACCEPTED: Final = "accepted"  # the server answered with a task id
NEVER_SENT: Final = "never_sent"  # provably no task: connect failure, queue full, 429
REJECTED: Final = "rejected"  # the server refused for good (banned prompt, bad input)
UNKNOWN: Final = "unknown"  # sent, no usable answer: a task may or may not exist
SUCCESS: Final = "success"
FAILED: Final = "failed"

JobStatus = Literal["pending", "done", "failed", "unknown"]
"""Where a job stands: ``pending`` until it is done, ``failed`` for good (a rerun skips it
unless told to retry), ``unknown`` when a submit's outcome is."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    job_key TEXT NOT NULL REFERENCES jobs(key),
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    task_id TEXT,
    state_tag TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    path TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (job_key, step)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    requests INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    run INTEGER,
    job_key TEXT,
    step TEXT,
    what TEXT NOT NULL,
    detail TEXT
);
"""


class JournalError(InvalidRequestError):
    """The journal cannot be used: unreadable, another version, or it disagrees with the input."""


@attrs.define
class StepRecord:
    """One submit of a job (``imagine`` or a button name) as the journal knows it."""

    step: str
    status: StepStatus
    task_id: str | None = None
    state_tag: str = ""
    attempts: int = 0
    error: str | None = None
    path: str | None = None
    updated: float = 0.0


@attrs.define
class JobRecord:
    """A job's row and its steps, as read back from the journal."""

    key: str
    status: JobStatus
    error: str | None = None
    steps: dict[str, StepRecord] = attrs.field(factory=dict)


class Journal:
    """The SQLite journal of one bulk run; open it with ``await Journal.open(path)``.

    ``run_id`` is created with the file and kept for every resume, so the ``state`` tags
    sent by a rerun match those of the first run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = ""
        self._run: int | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mjasync-journal"
        )
        self._conn: sqlite3.Connection | None = None
        self._lock_file: Any = None

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run *fn* on the journal thread; shielded, so a cancelled caller still knows it ran."""

        def run() -> _T:
            if self._conn is None:
                msg = "the journal is closed"
                raise JournalError(msg)
            return fn(self._conn)

        loop = asyncio.get_running_loop()
        with anyio.CancelScope(shield=True):
            result = await loop.run_in_executor(self._executor, run)
        return result  # noqa: RET504 - returned outside: mypy sees CancelScope swallow errors

    @classmethod
    async def open(cls, path: str | Path) -> Journal:
        """Open (or create) the journal at *path*.

        Raises:
            JournalError: the file is not a journal, or one of another schema version.
        """
        journal = cls(Path(path))
        try:
            await journal._call_open()
        except BaseException:
            journal._executor.shutdown(wait=False)
            raise
        return journal

    async def _call_open(self) -> None:
        def connect() -> str:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock(self.path)
            try:
                conn = sqlite3.connect(self.path, isolation_level=None)
            except sqlite3.Error as error:
                self._unlock()
                raise JournalError(f"{self.path}: not a usable journal ({error})") from None
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: the 'sending' row must survive a power cut, or a rerun could pay twice.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.executescript(_SCHEMA)
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not rows:
                    with conn:
                        conn.execute("BEGIN")
                        conn.executemany(
                            "INSERT INTO meta VALUES (?, ?)",
                            [
                                ("schema", str(SCHEMA_VERSION)),
                                ("run_id", secrets.token_hex(6)),
                                ("created", str(time.time())),
                            ],
                        )
                    rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if rows.get("schema") != str(SCHEMA_VERSION):
                    found = rows.get("schema")
                    msg = f"{self.path}: journal schema {found!r}, expected {SCHEMA_VERSION}"
                    raise JournalError(msg)
            except sqlite3.DatabaseError as error:
                conn.close()
                self._unlock()
                raise JournalError(f"{self.path}: not a usable journal ({error})") from None
            except BaseException:
                conn.close()
                self._unlock()
                raise
            self._conn = conn
            return str(rows["run_id"])

        loop = asyncio.get_running_loop()
        with anyio.CancelScope(shield=True):
            self.run_id = await loop.run_in_executor(self._executor, connect)

    async def aclose(self) -> None:
        """Close the connection and stop the journal thread."""

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._unlock()

        loop = asyncio.get_running_loop()
        with anyio.CancelScope(shield=True):
            await loop.run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _event(
        self,
        conn: sqlite3.Connection,
        what: str,
        job: str | None,
        step: str | None,
        detail: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, run, job_key, step, what, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), self._run, job, step, what, detail),
        )

    # -- runs ----------------------------------------------------------------------------

    async def begin_run(self) -> int:
        """Record the start of one invocation; returns its number (1 for the first)."""

        def begin(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.execute("INSERT INTO runs (started) VALUES (?)", (time.time(),))
                run = int(cursor.lastrowid or 0)
                self._run = run
                self._event(conn, "run_started", None, None, None)
            return run

        return await self._call(begin)

    async def end_run(self, requests: int, outcome: str) -> None:
        """Record how this invocation ended and how many HTTP requests it sent."""
        run = self._run

        def end(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE runs SET finished = ?, requests = ?, outcome = ? WHERE id = ?",
                    (time.time(), requests, outcome, run),
                )
                self._event(conn, "run_ended", None, None, outcome)

        await self._call(end)

    async def earlier_requests(self) -> int:
        """HTTP requests sent by the earlier runs of this journal (as last recorded)."""
        run = self._run

        def total(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(SUM(requests), 0) FROM runs WHERE id != ?", (run,)
            ).fetchone()
            return int(row[0])

        return await self._call(total)

    # -- jobs ----------------------------------------------------------------------------

    async def sync_jobs(
        self, jobs: Iterable[tuple[str, int, str, Mapping[str, Any]]]
    ) -> dict[str, JobRecord]:
        """Insert the jobs the journal lacks and read back every job's record.

        Each item is ``(key, line, prompt, spec)``. A key already in the journal with
        another prompt or images is an error: the journal would attach the wrong tasks.

        Raises:
            JournalError: a key's prompt or images differ from what the journal holds.
        """
        items = list(jobs)

        def sync(conn: sqlite3.Connection) -> dict[str, JobRecord]:
            now = time.time()
            existing = {
                key: json.loads(spec) for key, spec in conn.execute("SELECT key, spec FROM jobs")
            }
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for key, line, prompt, spec in items:
                    old = existing.get(key)
                    if old is None:
                        conn.execute(
                            "INSERT INTO jobs (key, line, prompt, spec, status, updated) "
                            "VALUES (?, ?, ?, ?, 'pending', ?)",
                            (key, line, prompt, json.dumps(spec, ensure_ascii=False), now),
                        )
                        continue
                    if old.get("prompt") != spec.get("prompt") or old.get("images") != spec.get(
                        "images"
                    ):
                        msg = (
                            f"{self.path}: job {key!r} (line {line}) has a different prompt or "
                            "images than when the journal recorded it; use a new journal"
                        )
                        raise JournalError(msg)
                    if old.get("actions") != spec.get("actions"):
                        conn.execute(
                            "UPDATE jobs SET spec = ?, line = ?, updated = ? WHERE key = ?",
                            (json.dumps(spec, ensure_ascii=False), line, now, key),
                        )
            return _read_jobs(conn, [item[0] for item in items])

        return await self._call(sync)

    async def set_job(self, key: str, status: JobStatus, error: str | None = None) -> None:
        """Record a job's status (``pending``, ``done``, ``failed``, ``unknown``)."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE jobs SET status = ?, error = ?, updated = ? WHERE key = ?",
                    (status, error, time.time(), key),
                )
                self._event(conn, f"job_{status}", key, None, error)

        await self._call(write)

    # -- steps ---------------------------------------------------------------------------

    async def step_sending(self, key: str, step: str, state_tag: str, requests: int) -> int:
        """Write the intent to submit *step*, before the request; returns the attempt number."""
        run = self._run

        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO steps (job_key, step, status, state_tag, attempts, updated) "
                    "VALUES (?, ?, 'sending', ?, 1, ?) "
                    "ON CONFLICT (job_key, step) DO UPDATE SET status = 'sending', "
                    "task_id = NULL, error = NULL, path = NULL, state_tag = excluded.state_tag, "
                    "attempts = attempts + 1, updated = excluded.updated",
                    (key, step, state_tag, now),
                )
                conn.execute("UPDATE runs SET requests = ? WHERE id = ?", (requests, run))
                self._event(conn, SENDING, key, step, state_tag)
                row = conn.execute(
                    "SELECT attempts FROM steps WHERE job_key = ? AND step = ?", (key, step)
                ).fetchone()
            return int(row[0])

        return await self._call(write)

    async def set_step(
        self,
        key: str,
        step: str,
        status: StepStatus,
        *,
        requests: int,
        task_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record a step's outcome; *task_id* None keeps the one already recorded."""
        run = self._run

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE steps SET status = ?, task_id = COALESCE(?, task_id), error = ?, "
                    "updated = ? WHERE job_key = ? AND step = ?",
                    (status, task_id, error, time.time(), key, step),
                )
                conn.execute("UPDATE runs SET requests = ? WHERE id = ?", (requests, run))
                self._event(conn, status, key, step, task_id or error)

        await self._call(write)

    async def set_path(self, key: str, step: str, path: str) -> None:
        """Record the downloaded file of a step (after its atomic rename)."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE steps SET path = ?, updated = ? WHERE job_key = ? AND step = ?",
                    (path, time.time(), key, step),
                )
                self._event(conn, "downloaded", key, step, path)

        await self._call(write)

    async def jobs(self) -> dict[str, JobRecord]:
        """Every job in the journal with its steps."""
        return await self._call(lambda conn: _read_jobs(conn, None))


def _lock(path: Path) -> Any:
    """Hold an exclusive lock beside the journal for as long as it is open.

    Two runs on one journal would each take the other's 'sending' rows for crash
    leftovers; and a rerun may only judge those rows once their writer is gone.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, trust the user
        return None
    handle = (path.parent / f"{path.name}.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        msg = f"{path}: another mjasync run is using this journal"
        raise JournalError(msg) from None
    return handle


def _read_jobs(conn: sqlite3.Connection, keys: list[str] | None) -> dict[str, JobRecord]:
    # The journal writes only these statuses (JobStatus, StepStatus); read them as such.
    records = {
        key: JobRecord(key=key, status=cast("JobStatus", status), error=error)
        for key, status, error in conn.execute("SELECT key, status, error FROM jobs")
    }
    for row in conn.execute(
        "SELECT job_key, step, status, task_id, state_tag, attempts, error, path, updated "
        "FROM steps"
    ):
        record = records.get(row[0])
        if record is not None:
            record.steps[row[1]] = StepRecord(*row[1:])
    if keys is None:
        return records
    return {key: records[key] for key in keys if key in records}
