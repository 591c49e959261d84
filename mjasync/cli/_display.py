"""What the CLI shows: results (human lines or ``--json``), progress bars, bulk status.

Results go to stdout, progress and errors to stderr. With rich installed and stderr a
terminal, progress is live bars; otherwise plain lines, rate-limited.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from mjasync import Task
from mjasync.bulk import BulkEvent, BulkReport, Job

from ._common import ErrorReport

__all__ = [
    "HAVE_RICH",
    "BulkDisplay",
    "Out",
    "TaskBars",
    "demo_summary",
    "report_lines",
    "task_dict",
]

try:  # rich is optional: without it the CLI prints plain progress lines.
    from rich.console import Console, RenderableType
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table
    from rich.text import Text

    HAVE_RICH = True
except ImportError:  # pragma: no cover - exercised only without the cli extra
    HAVE_RICH = False


def _percent(task: Task) -> int:
    """How full a task's bar is: a finished task is 100 whatever its last progress said."""
    return 100 if task.status == "SUCCESS" else task.progress or 0


def task_dict(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "action": str(task.action) if task.action is not None else None,
        "status": str(task.status),
        "progress": task.progress,
        "prompt": task.prompt,
        "state": task.state,
        "image_url": task.image_url,
        "fail_reason": task.fail_reason,
        "buttons": [button.describe() for button in task.buttons],
        "submit_time": task.submit_time.isoformat() if task.submit_time else None,
        "finish_time": task.finish_time.isoformat() if task.finish_time else None,
    }


class Out:
    """Where results go: JSON on stdout with ``--json``, else human lines; progress on stderr."""

    def __init__(
        self, as_json: bool, stdout: TextIO, stderr: TextIO, *, verbose: bool = False
    ) -> None:
        self.json = as_json
        self.stdout = stdout
        self.stderr = stderr
        # With -v the log lines go to stderr too; live bars would overwrite them.
        self.fancy = HAVE_RICH and not as_json and not verbose and stderr.isatty()

    def result(self, data: dict[str, Any], human: Sequence[str]) -> None:
        if self.json:
            print(json.dumps(data, ensure_ascii=False), file=self.stdout)
        else:
            for line in human:
                print(line, file=self.stdout)

    def note(self, line: str) -> None:
        if not self.json:
            print(line, file=self.stderr)

    def error(self, report: ErrorReport) -> None:
        print(f"mjasync: error: {report.message}", file=self.stderr)
        for line in report.details:
            print(f"  {line}", file=self.stderr)
        if self.json:
            data: dict[str, Any] = {"ok": False, "error": report.message}
            if report.details:
                data[report.details_key] = list(report.details)
            data.update(report.extra)
            print(json.dumps(data, ensure_ascii=False), file=self.stdout)


class TaskBars:
    """A progress line per task being waited on (rich bars, else a line per change)."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
        self._last: dict[str, tuple[str, int | None]] = {}
        if out.fancy:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(file=out.stderr),
            )

    def __enter__(self) -> TaskBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def callback(self, label: str) -> Callable[[Task], None]:
        def update(task: Task) -> None:
            percent = _percent(task)
            if self._progress is not None:
                row = self._rows.get(label)
                if row is None:
                    row = self._rows[label] = self._progress.add_task(label, total=100)
                self._progress.update(row, completed=percent, description=f"{label} {task.status}")
                return
            key = (str(task.status), task.progress)
            if self._last.get(label) != key:
                self._last[label] = key
                self.out.note(f"{label}: {task.status} {percent}%")

        return update


_QUEUED_STATUSES = frozenset({"", "NOT_START", "SUBMITTED"})


class BulkDisplay:
    """Bulk progress: a status line, a jobs bar with done/failed and an ETA, a row per task.

    The status line says what the run is waiting on ("waiting on 12 tasks (3 in queue,
    9 running)", "backing off 4s: server queue full") and when anything last changed,
    so a long wait never looks frozen. On a terminal it sits above the bars and the task
    rows are cut to the terminal's height; without one it is printed every *heartbeat*
    seconds in which no other line was.
    """

    def __init__(
        self,
        out: Out,
        total: int,
        *,
        heartbeat: float = 10.0,
        console: Any = None,
    ) -> None:
        self.out = out
        self.total = total
        self.done = 0
        self.failed = 0
        self.unknown = 0
        self.heartbeat = heartbeat
        self._progress: Any = None
        self._rows: dict[tuple[str, str], Any] = {}
        self._status: dict[tuple[str, str], str] = {}  # task in flight -> its status
        self._queued: set[tuple[str, str]] = set()  # submits waiting for room
        self._pause_until = 0.0
        self._pause_why = ""
        self._limit = 0
        self._last_change = time.monotonic()
        self._last_printed = time.monotonic()
        self._last_pushback = 0.0
        if out.fancy or console is not None:
            self._progress = _StatusProgress(
                self.status_line,
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=console or Console(file=out.stderr),
            )
            self._jobs: TaskID = self._progress.add_task(self._summary(), total=total)

    def _summary(self) -> str:
        text = f"jobs  [green]{self.done} done[/]"
        if self.failed:
            text += f"  [red]{self.failed} failed[/]"
        if self.unknown:
            text += f"  [yellow]{self.unknown} unknown[/]"
        return text

    def __enter__(self) -> BulkDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            for row in self._rows.values():
                self._progress.remove_task(row)
            self._rows.clear()
            self._progress.stop()

    # -- what the run is waiting on ------------------------------------------------------

    def status_line(self) -> str:
        """One line: what is being waited on, and how long ago anything changed."""
        now = time.monotonic()
        parts: list[str] = []
        if self._status:
            queued = sum(1 for status in self._status.values() if status in _QUEUED_STATUSES)
            count = len(self._status)
            parts.append(
                f"waiting on {count} task{'s' if count != 1 else ''} "
                f"({queued} in queue, {count - queued} running)"
            )
        if self._queued:
            count = len(self._queued)
            room = f"this run has {self._limit} on the server" if self._limit else "no room"
            parts.append(f"{count} submit{'s' if count != 1 else ''} waiting for room ({room})")
        pause = self._pause_until - now
        if pause > 0:
            parts.append(f"backing off {math.ceil(pause)}s: {self._pause_why}")
        if not parts:
            parts.append("working")
        parts.append(f"last change {now - self._last_change:.0f}s ago")
        return "; ".join(parts)

    def tick(self) -> None:
        """Called every second: without live bars, print the status line when due."""
        if self._progress is not None or not self._busy():
            return
        if time.monotonic() - self._last_printed >= self.heartbeat:
            self._print(self.status_line())

    def _busy(self) -> bool:
        return bool(self._status or self._queued or self._pause_until > time.monotonic())

    # -- events ----------------------------------------------------------------------------

    def __call__(self, event: BulkEvent) -> None:
        self._last_change = time.monotonic()
        kind = event.kind
        key = (event.job.key, event.step or "")
        finished = {"job_done": "done", "job_skipped": "done", "job_failed": "failed"}
        if kind in finished or kind == "job_unknown":
            if kind == "job_unknown":
                self.unknown += 1
            elif finished[kind] == "done":
                self.done += 1
            else:
                self.failed += 1
            self._forget_job(event.job.key)
            self._job_line(event)
        elif kind == "task_queued":
            self._queued.add(key)
            self._limit = event.limit
        elif kind in {"task_submitted", "task_progress"} and event.step is not None:
            self._queued.discard(key)
            self._status[key] = str(event.task.status) if event.task else "SUBMITTED"
            self._task_row(event)
        elif kind == "task_finished":
            self._status.pop(key, None)
        elif kind == "downloaded" and event.step is not None:
            self._drop_row(key)
        elif kind == "backoff":
            self._queued.add(key)
            self._limit = event.limit
            why = event.message.split(" (", 1)[0]
            if event.delay > 0:
                self._pause_until = max(self._pause_until, time.monotonic() + event.delay)
                self._pause_why = why
                line = f"backing off {event.delay:.0f}s: {event.message}"
            else:
                line = f"{event.message}; retrying when one of this run's tasks finishes"
            # Rate-limited on purpose: under a full queue every submitter is refused at once.
            if time.monotonic() - self._last_pushback > 5:
                self._last_pushback = time.monotonic()
                self._print(line)

    def _print(self, line: str) -> None:
        self._last_printed = time.monotonic()
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            self.out.note(line)

    def _job_line(self, event: BulkEvent) -> None:
        finished = self.done + self.failed + self.unknown
        name = f"{event.job.key} (line {event.job.line})" if event.job.line else event.job.key
        if self._progress is not None:
            self._progress.update(self._jobs, completed=finished, description=self._summary())
            if event.kind in {"job_failed", "job_unknown"}:
                word = "failed" if event.kind == "job_failed" else "unknown"
                self._print(f"{word}: {name}: {event.message}")
            return
        word = {"job_done": "done", "job_skipped": "done (earlier run)"}.get(
            event.kind, "failed" if event.kind == "job_failed" else "unknown"
        )
        detail = f": {event.message}" if event.message else ""
        self._print(f"[{finished}/{self.total}] {word} {name}{detail}")

    def _task_row(self, event: BulkEvent) -> None:
        if self._progress is None or event.step is None:
            return
        key = (event.job.key, event.step)
        task = event.task
        percent = _percent(task) if task else 0
        status = task.status if task else "SUBMITTED"
        label = f"  {event.job.key[:16]} {event.step:<7} {status}"
        row = self._rows.get(key)
        if row is None:
            self._rows[key] = self._progress.add_task(label, total=100, completed=percent)
        else:
            self._progress.update(row, completed=percent, description=label)

    def _drop_row(self, key: tuple[str, str]) -> None:
        row = self._rows.pop(key, None)
        if row is not None and self._progress is not None:
            self._progress.remove_task(row)

    def _forget_job(self, job_key: str) -> None:
        for key in [k for k in self._rows if k[0] == job_key]:
            self._drop_row(key)
        for key in [k for k in self._status if k[0] == job_key]:
            del self._status[key]
        self._queued = {k for k in self._queued if k[0] != job_key}


def report_lines(report: BulkReport, out: Out) -> list[str]:
    def name(key: str) -> str:
        line = report.lines.get(key)
        return f"line {line} ({key})" if line else key

    lines = [
        f"{len(report.done)} of {report.total} jobs done"
        + (f" ({len(report.skipped)} in an earlier run)" if report.skipped else "")
        + f", {len(report.failed)} failed, {len(report.unknown)} unknown"
        + f"; {report.requests} requests ({report.requests_total} over all runs)"
        + f" in {report.elapsed:.1f}s",
    ]
    lines += [f"  failed  {name(key)}: {reason}" for key, reason in report.failed.items()]
    lines += [f"  unknown {name(key)}: {reason}" for key, reason in report.unknown.items()]
    lines.append(f"images: {report.out_dir}   journal: {report.journal}")
    return lines


def demo_summary(report: BulkReport, jobs: Sequence[Job], out: Out) -> None:
    by_job = report.job_files
    if HAVE_RICH:
        table = Table(title="mjasync demo", title_justify="left")
        for column in ("job", "prompt", "result", "images"):
            table.add_column(column)
        for job in jobs:
            result = (
                "[green]done[/]"
                if job.key in report.done
                else f"[red]{report.failed.get(job.key) or report.unknown.get(job.key)}[/]"
            )
            table.add_row(job.key, job.prompt, result, str(len(by_job.get(job.key, []))))
        Console(file=out.stdout).print(table)
    for line in report_lines(report, out):
        print(line, file=out.stdout)
    print(
        "next: point the CLI at your proxy (MJ_BASE_URL, MJ_API_KEY) and run "
        "`mjasync batch prompts.jsonl --out DIR`",
        file=out.stdout,
    )


if HAVE_RICH:

    class _StatusProgress(Progress):
        """rich bars under a status line, never taller than the terminal.

        A live display taller than the terminal is cut at the bottom, and what stays
        visible may not change for minutes: the status line goes first, and task rows
        beyond the terminal's height are summed up in one line instead.
        """

        def __init__(self, status: Callable[[], str], *columns: Any, **options: Any) -> None:
            self._status_text = status  # before Progress.__init__, which renders once
            super().__init__(*columns, **options)

        def get_renderables(self) -> Iterator[RenderableType]:
            yield Text(self._status_text(), style="dim", no_wrap=True, overflow="ellipsis")
            tasks = list(self.tasks)
            # Progress renders once while building its Live, before self.live exists.
            live = getattr(self, "live", None)
            room = max(1, (live.console.size.height if live is not None else 24) - 3)
            yield self.make_tasks_table(tasks[:room])
            if len(tasks) > room:
                yield Text(f"  ... and {len(tasks) - room} more tasks in flight", style="dim")
