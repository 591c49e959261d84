"""The ``mjasync`` command line: demo, simulator, imagine, action, task, seed, download, batch.

Exit codes (also in ``mjasync --help``): 0 ok; 1 some jobs (or the task) failed or
have an unknown outcome; 2 usage or configuration error; 3 API, authentication or
connection error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn, TextIO

import anyio
import attrs

import mjasync
from mjasync import (
    DEFAULT_MAX_IMAGE_BYTES,
    APIError,
    AuthenticationError,
    ButtonNotFoundError,
    Client,
    ConnectError,
    InvalidRequestError,
    MediaKind,
    MJError,
    ModalRequiredError,
    PollPolicy,
    RetryPolicy,
    RouteNotFoundError,
    Task,
    TaskError,
    TaskTimeoutError,
    TransportError,
    file_stem,
    gather_chains,
)
from mjasync.bulk import (
    BulkEvent,
    BulkReport,
    BulkRunner,
    InputError,
    Job,
    UnreachableError,
    check_jobs,
    load_jobs,
    parse_actions,
)

__all__ = [
    "EXIT_API",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130

_AUTH_STYLES = ("bearer", "authorization", "mj-api-secret")

_EPILOG = """\
configuration: flags, else the environment: MJ_BASE_URL, MJ_API_KEY, MJ_AUTH.
-v/--verbose shows the library's log: requests, retries, back-offs (never the key).

exit codes:
  0    ok
  1    some jobs (or the task) failed, or have an unknown submit outcome
  2    usage or configuration error (bad flag, missing MJ_BASE_URL, malformed input)
  3    API, authentication or connection error
  130  interrupted (Ctrl-C); a batch resumes when the same command is run again

start here:  mjasync demo
"""

# The simulator's dialects (mjasync.simulator.DIALECTS), without importing the server.
DEMO_DIALECTS = ("plus", "oss", "trueai", "newapi")

DEMO_PROMPTS = (
    ("a red fox in the snow, watercolor --ar 3:2", "U1,U2,U3,U4"),
    ("a lighthouse at dusk, oil painting", "U1,U2,U3,U4"),
    ("a paper crane on a desk, macro photo", "U1,U2"),
    ("a city of glass under the sea, concept art", "U1,U2"),
    ("an owl made of autumn leaves", ""),
    ("a tiny robot watering a bonsai, isometric", ""),
)

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


class UsageError(Exception):
    """A mistake in how the command was called; printed as one line, exit code 2."""


class ServerUnreachableError(Exception):
    """The server stopped answering during a wait; printed as one line, exit code 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: scripts log stderr.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- output ----------------------------------------------------------------------------


def _task_dict(task: Task) -> dict[str, Any]:
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


class _Out:
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

    def error(self, report: _ErrorReport) -> None:
        print(f"mjasync: error: {report.message}", file=self.stderr)
        for line in report.details:
            print(f"  {line}", file=self.stderr)
        if self.json:
            data: dict[str, Any] = {"ok": False, "error": report.message}
            if report.details:
                data[report.details_key] = list(report.details)
            data.update(report.extra)
            print(json.dumps(data, ensure_ascii=False), file=self.stdout)


class _TaskBars:
    """A progress line per task being waited on (rich bars, else a line per change)."""

    def __init__(self, out: _Out) -> None:
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

    def __enter__(self) -> _TaskBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def callback(self, label: str) -> Callable[[Task], None]:
        def update(task: Task) -> None:
            percent = 100 if task.status == "SUCCESS" else task.progress or 0
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


class _BulkDisplay:
    """Bulk progress: a status line, a jobs bar with done/failed and an ETA, a row per task.

    The status line says what the run is waiting on ("waiting on 12 tasks (3 in queue,
    9 running)", "backing off 4s: server queue full") and when anything last changed,
    so a long wait never looks frozen. On a terminal it sits above the bars and the task
    rows are cut to the terminal's height; without one it is printed every *heartbeat*
    seconds in which no other line was.
    """

    def __init__(
        self,
        out: _Out,
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

    def __enter__(self) -> _BulkDisplay:
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
        percent = (100 if task.status == "SUCCESS" else task.progress or 0) if task else 0
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


# -- commands --------------------------------------------------------------------------


def _client(args: argparse.Namespace, **extra: Any) -> Client:
    if args.poll_interval is not None:
        interval = args.poll_interval
        extra.setdefault(
            "poll",
            PollPolicy(
                interval=interval, max_interval=max(interval, 10.0), first_poll=min(interval, 0.5)
            ),
        )
    if args.attempts is not None:
        extra.setdefault("retry", RetryPolicy(attempts=args.attempts))
    return Client(
        args.base_url,
        args.api_key,
        auth=args.auth,
        mode=args.mode,
        timeout=args.timeout,
        **extra,
    )


def _flag_value(flag: str, parse: Callable[[Any], Any], value: Any) -> Any:
    """Parse a flag's value; a bad one is a usage error that names the flag."""
    try:
        return parse(value)
    except InvalidRequestError as error:
        raise UsageError(f"{flag}: {error}") from None


def _require(value: str, name: str) -> str:
    if not value.strip():
        raise UsageError(f"{name} must not be empty")
    return value


async def _cmd_imagine(args: argparse.Namespace, out: _Out) -> int:
    _require(args.prompt, "PROMPT")
    buttons = _flag_value("--upscale", parse_actions, args.upscale)
    async with _client(args) as mj:
        submission = await mj.imagine(args.prompt)
        out.note(f"submitted imagine task {submission.task_id}")
        files: list[Path] = []
        with _TaskBars(out) as bars:
            grid = await mj.await_task(
                submission, timeout=args.wait_timeout, on_progress=bars.callback("imagine")
            )
            if args.out:
                name = file_stem(grid, prefix="grid")
                files.append(await mj.download(grid, args.out, filename=name))

            async def press(button: str) -> tuple[Task, Path | None]:
                task = await mj.run_action(
                    grid, button, timeout=args.wait_timeout, on_progress=bars.callback(button)
                )
                # Download inside the chain: result URLs expire.
                name = file_stem(task, prefix=button)
                path = await mj.download(task, args.out, filename=name) if args.out else None
                return task, path

            # Every pressed button is a paid task: one failure must not discard the others.
            outcomes = await gather_chains(press(button) for button in buttons)
    results: dict[str, Task] = {}
    errors: dict[str, str] = {}
    for button, outcome in zip(buttons, outcomes, strict=True):
        if isinstance(outcome, Exception):
            errors[button] = f"{type(outcome).__name__}: {outcome}"
            continue
        task, path = outcome
        results[button] = task
        if path is not None:
            files.append(path)
    out.result(
        {
            "ok": not errors,
            "task": _task_dict(grid),
            "actions": {b: _task_dict(t) for b, t in results.items()},
            "errors": errors,
            "files": [str(f) for f in files],
        },
        [
            f"task {grid.id}: {grid.status}",
            f"image: {grid.image_url}",
            *(f"{b}: task {t.id} {t.image_url}" for b, t in results.items()),
            *(f"{b}: failed: {e}" for b, e in errors.items()),
            *(f"saved {f}" for f in files),
        ],
    )
    return EXIT_FAILED if errors else EXIT_OK


async def _cmd_action(args: argparse.Namespace, out: _Out) -> int:
    mask = Path(args.mask) if args.mask is not None else None
    if args.prompt is not None:
        _require(args.prompt, "--prompt")
    async with _client(args) as mj:
        parent = await mj.fetch(args.task_id)
        with _TaskBars(out) as bars:
            try:
                task = await mj.run_action(
                    parent,
                    args.button,
                    prompt=args.prompt,
                    mask=mask,
                    timeout=args.wait_timeout,
                    on_progress=bars.callback(args.button),
                )
            except ModalRequiredError as error:
                # Remix (or a relay that hid the modal) asks for a prompt after the fact.
                msg = (
                    f"pressing {args.button} opened a modal (task {error.task.id}, probably "
                    "remix): press it again with --prompt TEXT (and --mask FILE for vary_region)"
                )
                raise TaskError(error.task, msg) from None
        files: list[Path] = []
        if args.out:
            name = file_stem(task, prefix=_button_label(parent, args.button))
            files.append(await mj.download(task, args.out, filename=name))
    out.result(
        {"ok": True, "task": _task_dict(task), "files": [str(f) for f in files]},
        [f"task {task.id}: {task.status}", f"image: {task.image_url}"]
        + [f"saved {f}" for f in files],
    )
    return EXIT_OK


def _button_label(parent: Task, key: str) -> str:
    """The button's stable name (``V2``, ``upscale_subtle``) for file names, else *key*."""
    try:
        return parent.button(key).name or key
    except ButtonNotFoundError:
        return key


async def _cmd_download(args: argparse.Namespace, out: _Out) -> int:
    async with _client(args) as mj:
        task = await mj.fetch(args.task_id)
        kind: MediaKind | None = "video" if args.video else None
        path = await mj.download(task, args.out, kind=kind, filename=file_stem(task))
    out.result(
        {"ok": True, "task": _task_dict(task), "files": [str(path)]},
        [f"saved {path}"],
    )
    return EXIT_OK


async def _cmd_task(args: argparse.Namespace, out: _Out) -> int:
    async with _client(args) as mj:
        if args.wait:
            # One fetch first: a wrong base URL, key or host fails now, not after the
            # whole --wait-timeout of quiet polling. Anything else is the wait's to judge:
            # an unknown id gets its short grace (a relay may not list a task it accepted
            # a moment ago), a 5xx its retries.
            try:
                await mj.fetch(args.task_id)
            except MJError as error:
                wrong = isinstance(error, RouteNotFoundError | AuthenticationError)
                if wrong or _unreachable(error) is not None:
                    raise
            with _TaskBars(out) as bars:
                try:
                    task = await mj.await_task(
                        args.task_id, timeout=args.wait_timeout, on_progress=bars.callback("task")
                    )
                except TaskTimeoutError as error:
                    await _explain_timeout(mj, args, error)
                    raise
        else:
            task = await mj.fetch(args.task_id)
    buttons = ", ".join(b.describe() for b in task.buttons) or "none"
    progress = f" {task.progress}%" if task.progress is not None else ""
    out.result(
        {"ok": True, "task": _task_dict(task)},
        [
            f"task {task.id}: {task.action or '?'} {task.status}{progress}",
            f"prompt: {task.prompt}",
            f"image: {task.image_url or '-'}",
            f"buttons: {buttons}",
        ]
        + ([f"failed: {task.fail_reason}"] if task.fail_reason else []),
    )
    return EXIT_FAILED if task.status in {"FAILURE", "CANCEL"} else EXIT_OK


async def _explain_timeout(mj: Client, args: argparse.Namespace, error: TaskTimeoutError) -> None:
    """A wait ran out: was the task slow (exit 1), or the server failing (exit 3)?

    The poller backs off quietly on failed polls (its warnings are the CLI's to show,
    with -v), so one bounded fetch tells the two apart and names the real cause.
    """
    with anyio.move_on_after(min(5.0, args.timeout)):
        try:
            await mj.fetch(args.task_id)
        except RouteNotFoundError:
            raise
        except (TransportError, APIError) as failure:
            if (
                isinstance(failure, TransportError)
                or failure.status is None
                or (failure.status >= 500)
            ):
                why = _unreachable_text(failure) or str(failure)
                raise ServerUnreachableError(
                    f"task {args.task_id} did not finish within {args.wait_timeout:g} s: "
                    f"the server stopped answering ({why})"
                ) from None
        except MJError:
            return


async def _cmd_seed(args: argparse.Namespace, out: _Out) -> int:
    async with _client(args) as mj:
        seed = await mj.image_seed(args.task_id)
    out.result({"ok": True, "task_id": args.task_id, "seed": seed}, [seed])
    return EXIT_OK


async def _checked_jobs(path: Path) -> list[Job]:
    """The jobs of *path*, every one checked, before any client exists or anything is sent.

    A bad file is refused as a whole, every problem listed by line (the CLI never
    changes the client's image limit, so the default one applies).
    """
    jobs = await anyio.to_thread.run_sync(load_jobs, path)
    await check_jobs(jobs, name=str(path), max_image_bytes=DEFAULT_MAX_IMAGE_BYTES)
    return jobs


async def _run_batch(
    mj: Client,
    out: _Out,
    jobs: Sequence[Job],
    out_dir: Path,
    **options: Any,
) -> BulkReport:
    if out.json:
        return await BulkRunner(mj, out_dir, **options).run(jobs)
    with _BulkDisplay(out, len(jobs)) as display:
        runner = BulkRunner(mj, out_dir, on_event=display, **options)
        failure: Exception | None = None
        async with anyio.create_task_group() as group:

            async def heartbeat() -> None:
                while True:
                    await anyio.sleep(1.0)
                    display.tick()

            group.start_soon(heartbeat)
            try:
                report = await runner.run(jobs)
            except Exception as error:
                # Raised out here, not wrapped in the task group's ExceptionGroup: a run
                # that stops (bad key, wrong URL, server gone) is one line, not a traceback.
                failure = error
            group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return report


def _report_lines(report: BulkReport, out: _Out) -> list[str]:
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


async def _cmd_batch(args: argparse.Namespace, out: _Out) -> int:
    actions = _flag_value("--actions", parse_actions, args.actions)
    jobs = await _checked_jobs(Path(args.file))
    async with _client(args) as mj:
        report = await _run_batch(
            mj,
            out,
            jobs,
            Path(args.out),
            journal=args.journal,
            actions=actions,
            concurrency=args.concurrency,
            task_timeout=args.wait_timeout,
            resubmit_unknown=args.resubmit_unknown,
            retry_failed=args.retry_failed,
        )
    out.result(report.to_dict(), _report_lines(report, out))
    return EXIT_OK if report.ok else EXIT_FAILED


def _prepare_demo(out_dir: Path) -> Path:
    """Clear the previous demo and write its jobs file (blocking, but a handful of files)."""
    # A demo always starts afresh: the old journal names tasks of a simulator that is gone.
    for old in [*out_dir.glob("demo-*.png"), *out_dir.glob("demo-journal.sqlite3*")]:
        old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "demo-jobs.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for number, (prompt, actions) in enumerate(DEMO_PROMPTS, 1):
            line = {"key": f"demo-{number}", "prompt": prompt, "actions": actions}
            handle.write(json.dumps(line) + "\n")
    return path


async def _cmd_demo(args: argparse.Namespace, out: _Out) -> int:
    from mjasync.simulator import Simulator

    out_dir = Path(args.out)
    jobs_file = _prepare_demo(out_dir)
    jobs = await _checked_jobs(jobs_file)
    async with Simulator(
        dialect=args.dialect, time_scale=args.time_scale, seed=1, slots=6, queue_size=24
    ) as sim:
        out.note(
            f"simulator ({args.dialect}) listening on {sim.base_url} (time scale {args.time_scale})"
        )
        poll = PollPolicy(interval=0.3, max_interval=1.0, first_poll=0.2)
        async with Client(sim.base_url, "demo-key", poll=poll) as mj:
            report = await _run_batch(
                mj, out, jobs, out_dir, journal=out_dir / "demo-journal.sqlite3", concurrency=6
            )
    if out.json:
        out.result(report.to_dict(), [])
    else:
        _demo_summary(report, jobs, out)
    return EXIT_OK if report.ok else EXIT_FAILED


def _demo_summary(report: BulkReport, jobs: Sequence[Job], out: _Out) -> None:
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
    for line in _report_lines(report, out):
        print(line, file=out.stdout)
    print(
        "next: point the CLI at your proxy (MJ_BASE_URL, MJ_API_KEY) and run "
        "`mjasync batch prompts.jsonl --out DIR`",
        file=out.stdout,
    )


def _cmd_simulator(argv: Sequence[str]) -> int:
    from mjasync.simulator import serve

    if {"-h", "--help"} & set(argv):
        # The simulator's own help (every default shown), under this command's name.
        with suppress(SystemExit):
            serve(["--help"], prog="mjasync simulator")
        return EXIT_OK
    return serve(list(argv), prog="mjasync simulator")


# -- parsing and main ------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _common_options(suppress: bool) -> _Parser:
    """The global flags, accepted before or after the command name."""
    parent = _Parser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    group = parent.add_argument_group("connection (also MJ_BASE_URL, MJ_API_KEY, MJ_AUTH)")
    group.add_argument("--base-url", default=default, help="the proxy, e.g. https://host")
    group.add_argument("--api-key", default=default, help="the key (prefer MJ_API_KEY)")
    group.add_argument(
        "--auth",
        choices=_AUTH_STYLES,
        default=default,
        help="how the key is sent (default bearer)",
    )
    group.add_argument("--mode", default=default, help="fast, relax or turbo path prefix")
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=argparse.SUPPRESS if suppress else 30.0,
        help="seconds per HTTP request (default 30)",
    )
    group.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=argparse.SUPPRESS if suppress else None,
        help="seconds between status polls of a running task (default 2)",
    )
    group.add_argument(
        "--attempts",
        type=_positive_int,
        default=argparse.SUPPRESS if suppress else None,
        help="tries per HTTP request, the first included (default 3); "
        "a submit is only retried when it provably never arrived",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print machine-readable JSON on stdout, no progress bars",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log every request and retry on stderr (the key is never shown)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``mjasync`` argument parser."""
    parser = _Parser(
        prog="mjasync",
        description="Midjourney via a midjourney-proxy server: single tasks, resumable "
        "bulk runs, and an offline simulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"mjasync {mjasync.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = [_common_options(suppress=True)]

    def wait_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--wait-timeout",
            type=_positive_float,
            default=600.0,
            help="seconds to wait for one task (default 600)",
        )

    demo = sub.add_parser(
        "demo", help="run a small bulk job against a built-in simulator", parents=common
    )
    demo.add_argument("--out", default="mjasync-demo-out", help="where images go")
    demo.add_argument(
        "--time-scale",
        type=_positive_float,
        default=0.6,
        help="real seconds per simulated second (default 0.6)",
    )
    demo.add_argument(
        "--dialect",
        choices=DEMO_DIALECTS,
        default="plus",
        help="which server the simulator plays: plus (midjourney-proxy-plus, the default), "
        "oss (novicezk's midjourney-proxy), trueai or newapi (the new-api relay)",
    )
    sub.add_parser(
        "simulator",
        help="serve the offline simulator (see `mjasync simulator --help`)",
        add_help=False,
    )

    imagine = sub.add_parser("imagine", help="imagine one prompt", parents=common)
    imagine.add_argument("prompt")
    imagine.add_argument("--upscale", help="buttons to press after: U1,U2 or all")
    imagine.add_argument("--out", help="download the images into this directory")
    wait_option(imagine)

    action = sub.add_parser("action", help="press a button of a finished task", parents=common)
    action.add_argument("task_id")
    action.add_argument("button", help="U1, V2, vary_region, a label, an emoji or a customId")
    action.add_argument(
        "--prompt",
        help='the prompt for a button that opens a modal (custom_zoom: "... --zoom 1.5")',
    )
    action.add_argument(
        "--mask", metavar="FILE", help="vary_region's mask: a PNG, white = repaint, black = keep"
    )
    action.add_argument("--out", help="download the result into this directory")
    wait_option(action)

    task = sub.add_parser("task", help="show a task", parents=common)
    task.add_argument("task_id")
    task.add_argument("--wait", action="store_true", help="wait until it finishes")
    wait_option(task)

    seed = sub.add_parser("seed", help="print a finished task's seed", parents=common)
    seed.add_argument("task_id")

    download = sub.add_parser(
        "download",
        help="save a finished task's image (or video) as DIR/<task id>.<ext>",
        parents=common,
    )
    download.add_argument("task_id")
    download.add_argument("--out", required=True, help="the directory to save into")
    download.add_argument(
        "--video", action="store_true", help="save the video (default: a VIDEO task's video)"
    )

    batch = sub.add_parser(
        "batch",
        help="run a JSONL or text file of prompts, resumably",
        parents=common,
        description="Each job: imagine, wait, press its buttons, download everything. "
        "Rerun the same command after a crash to resume from the journal.",
    )
    batch.add_argument("file", help="JSONL (prompt, images, actions, key) or one prompt a line")
    batch.add_argument("--out", required=True, help="where images go")
    batch.add_argument("--journal", help="the SQLite journal (default OUT/mjasync-journal.sqlite3)")
    batch.add_argument("--actions", default="", help="buttons for jobs naming none: U1,U2 or all")
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="jobs in flight (default 4); their tasks on the server adapt to its queue",
    )
    batch.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="resend submits whose outcome is unknown (may pay twice)",
    )
    batch.add_argument(
        "--retry-failed", action="store_true", help="run failed steps again (new tasks)"
    )
    wait_option(batch)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, _Out], Coroutine[Any, Any, int]]] = {
    "demo": _cmd_demo,
    "imagine": _cmd_imagine,
    "action": _cmd_action,
    "task": _cmd_task,
    "seed": _cmd_seed,
    "download": _cmd_download,
    "batch": _cmd_batch,
}


def _exit_code(error: BaseException) -> int:
    if isinstance(error, InvalidRequestError | ButtonNotFoundError | UsageError):
        return EXIT_USAGE
    if isinstance(error, TaskError | TaskTimeoutError):
        return EXIT_FAILED
    return EXIT_API


# The library's parameters and the CLI's flags for them: a CLI user never typed prompt=.
_FLAGS = {"prompt": "--prompt", "mask": "--mask FILE"}
_PARAMETER = re.compile(r"(?<![\w-])(prompt|mask)=(\.\.\.)?(\"[^\"]*\")?")


def _cli_words(message: str) -> str:
    """A library message in the CLI's words: ``prompt="x"`` becomes ``--prompt "x"``."""

    def flag(match: re.Match[str]) -> str:
        value = match.group(3)
        return _FLAGS[match.group(1)] + (f" {value}" if value else "")

    return _PARAMETER.sub(flag, message)


@attrs.frozen
class _ErrorReport:
    """What the CLI prints for a failure: one line, then indented details (and JSON)."""

    message: str
    details: tuple[str, ...] = ()
    details_key: str = "hints"
    extra: dict[str, Any] = attrs.field(factory=dict)


_WHERE = re.compile(r"^([A-Z]+) (\S+?):? ")
_CHECK_URL = "check --base-url or MJ_BASE_URL"
# Routes every midjourney-proxy serves: a miss on one of them means there is none.
_CORE_ROUTE = re.compile(r"^/(submit/imagine|task/[^/]+/fetch|task/list-by-condition)$")


def _api_root(url: str) -> tuple[str, str]:
    """``(API root, route)`` of a request URL: ``("http://h/mj", "/task/1/fetch")``."""
    cut = url.rfind("/mj/")
    if cut < 0:
        return url, ""
    return url[: cut + 3], url[cut + 3 :]


def _answer_shape(body: object) -> str:
    if body is None or body == "":
        return "an empty answer"
    if isinstance(body, str):
        return "a web page" if body.lstrip().startswith("<") else "text, not the proxy's JSON"
    return "JSON that is not the proxy's"


def _route_report(error: RouteNotFoundError) -> _ErrorReport:
    """#9.4: a base URL with no proxy behind it reads as that, in one line."""
    match = _WHERE.match(error.message)
    method = match.group(1) if match else ""
    url = error.url or (match.group(2) if match else "")
    root, route = _api_root(url)
    answered = f"{method} {url}".strip() + (
        f" answered HTTP {error.status} with {_answer_shape(error.body)}"
    )
    if _CORE_ROUTE.match(route):
        message = f"no midjourney-proxy API at {root}: {answered}; {_CHECK_URL}"
    else:
        message = (
            f"this server has no {method} /mj{route}: {answered}; {_CHECK_URL}, or whether "
            "this server supports it (relays such as new-api serve only some routes)"
        )
    return _ErrorReport(message, extra={"url": url, "status": error.status})


def _auth_choice(args: argparse.Namespace | None, style: str) -> str:
    """How *style* was chosen, in the user's terms: a flag, the environment or the default."""
    if args is not None and getattr(args, "auth", None):
        return f"--auth {style}"
    if os.environ.get("MJ_AUTH"):
        return f"MJ_AUTH={style}"
    return f"--auth {style}, the default"


def _auth_in_effect(args: argparse.Namespace | None) -> str:
    flag = getattr(args, "auth", None) if args is not None else None
    return str(flag or os.environ.get("MJ_AUTH") or "bearer")


def _auth_report(error: AuthenticationError, args: argparse.Namespace | None) -> _ErrorReport:
    """#9.3: which header carried the key, and which --auth the server's answer points to."""
    status = error.status or 401
    match = _WHERE.match(error.message)
    where = f"{match.group(1)} {match.group(2)} " if match else ""
    said = f": {error.description_en}" if error.description_en else " with an empty body"
    message = f"authentication failed: {where}answered HTTP {status}{said}"
    shape, reads = error.refused_by, error.reads_auth
    style = error.auth_style
    details: list[str] = []
    if style is None:
        details.append("no API key was sent: pass --api-key or set MJ_API_KEY")
    else:
        header = (
            "Authorization: Bearer <key>" if style == "bearer" else f"{error.auth_header}: <key>"
        )
        details.append(f'the key was sent as "{header}" ({_auth_choice(args, style)})')
    if shape:
        details.append(shape)
    suggested = [s for s in error.suggested_auth if s != style]
    flags = " or ".join(f"--auth {s}" for s in suggested)
    if suggested and style is None:
        if suggested[0] != _auth_in_effect(args):
            details.append(
                f"add --auth {suggested[0]} (or MJ_AUTH={suggested[0]}): this server reads "
                "the key that way"
            )
    elif suggested:
        details.append(f"try {flags} (or MJ_AUTH={suggested[0]})")
    elif style is not None and reads:
        details.append(
            "the key went where this server looks for it: check the key itself "
            "(--api-key or MJ_API_KEY)"
        )
    elif style is not None:
        others = " or ".join(f"--auth {s}" for s in _AUTH_STYLES if s != style)
        details.append(f"check the key (--api-key or MJ_API_KEY), or send it with {others}")
    extra = {
        "auth": {
            "sent": style,
            "header": error.auth_header,
            "suggested": list(error.suggested_auth),
        }
    }
    return _ErrorReport(message, tuple(details), extra=extra)


def _unreachable(error: BaseException) -> ConnectError | None:
    """*error* when it says the server cannot be reached; not when this process's own
    pool had no free connection (that is congestion here, not the server)."""
    if isinstance(error, ConnectError) and error.reason != "no free connection":
        return error
    return None


def _unreachable_text(error: BaseException) -> str | None:
    """``cannot reach HOST: REASON`` for a connection that never got through, else None."""
    failed = _unreachable(error)
    if failed is None:
        return None
    return f"cannot reach {failed.host or 'the server'}: {failed.reason}"


_RERUN = (
    "the batch stopped; rerun the same command once fixed: finished work is kept and the "
    "jobs not sent are sent normally, no flag needed"
)


def _describe_error(error: BaseException, args: argparse.Namespace | None = None) -> _ErrorReport:
    """The one-line message, and the lines under it, to print for *error*."""
    batch = args is not None and getattr(args, "command", None) == "batch"
    if isinstance(error, InputError) and len(error.problems) > 1:
        count = len(error.problems)
        message = f"{count} problems in the jobs; nothing was submitted"
        return _ErrorReport(message, tuple(error.problems), details_key="problems")
    if isinstance(error, InputError):
        return _ErrorReport(f"{error.problems[0]} (nothing was submitted)")
    if isinstance(error, AuthenticationError):
        report = _auth_report(error, args)
        return attrs.evolve(report, details=(*report.details, _RERUN)) if batch else report
    if isinstance(error, RouteNotFoundError):
        report = _route_report(error)
        return attrs.evolve(report, details=(_RERUN,)) if batch else report
    if isinstance(error, UnreachableError):
        hint = (
            f"{_CHECK_URL}, and --timeout (the server never answered within it)"
            if error.maybe_sent
            else f"{_CHECK_URL}, and that the server is running"
        )
        return _ErrorReport(str(error), (hint,), extra={"host": error.host})
    if isinstance(error, ConnectError):
        text = _unreachable_text(error)
        if text is not None:
            message = f"{text} ({_CHECK_URL}, and that the server is running; nothing was sent)"
            return _ErrorReport(message)
    text = str(error) or type(error).__name__
    if isinstance(error, InvalidRequestError):
        text = _cli_words(text)
    return _ErrorReport(text)


@contextmanager
def _logging(verbose: bool, stderr: TextIO) -> Iterator[None]:
    """The CLI owns the ``mjasync`` logger's output while it runs.

    Without -v nothing of the library's logging is printed (the CLI reports failures
    itself, in one line); Python's last-resort handler would otherwise print the
    poller's warnings in the middle of progress output. With -v every record from
    DEBUG up goes to stderr with a timestamp.
    """
    logger = logging.getLogger("mjasync")
    saved = (logger.level, logger.propagate)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", "%H:%M:%S"
            )
        )
        logger.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


async def _interruptible(work: Coroutine[Any, Any, int]) -> int:
    """Run *work*; Ctrl-C cancels it through a cancel scope, then raises KeyboardInterrupt.

    asyncio.run's own handler cancels the main task once; a shielded journal write that
    is running at that moment absorbs the cancellation and the run would go on to the
    end. A cancel scope stays cancelled, so the work stops at its next checkpoint.
    """
    loop = asyncio.get_running_loop()
    interrupted = False
    with anyio.CancelScope() as scope:

        def on_interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            scope.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            installed = False  # not the main thread, or no signals here: keep the default
        try:
            return await work
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)
    if interrupted:
        raise KeyboardInterrupt
    return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `simulator` owns its own flags; hand them over untouched.
    if args_list and args_list[0] == "simulator":
        return _cmd_simulator(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    out = _Out(bool(args.json), sys.stdout, sys.stderr, verbose=bool(args.verbose))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = _COMMANDS[args.command]
    with _logging(bool(args.verbose), sys.stderr):
        try:
            return asyncio.run(_interruptible(command(args, out)))
        except KeyboardInterrupt:
            hint = "; rerun the same command to resume" if args.command == "batch" else ""
            out.error(_ErrorReport(f"interrupted{hint}"))
            return EXIT_INTERRUPTED
        except (MJError, UsageError, ServerUnreachableError) as error:
            # Before OSError: TaskTimeoutError is a TimeoutError, TransportError a
            # ConnectionError, and both are OSErrors that are not about a local file.
            out.error(_describe_error(error, args))
            return _exit_code(error)
        except OSError as error:
            text = f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
            out.error(_ErrorReport(text))
            return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
