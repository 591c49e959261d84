"""The CLI's commands: imagine, action, task, seed, download, batch, demo, simulator.

Each ``cmd_*`` coroutine takes the parsed arguments and an `Out`, does its work through
the public API, prints its result and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio

from mjasync import (
    DEFAULT_MAX_IMAGE_BYTES,
    APIError,
    AuthenticationError,
    ButtonNotFoundError,
    Client,
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
from mjasync.bulk import BulkReport, BulkRunner, Job, check_jobs, load_jobs, parse_actions

from ._common import EXIT_FAILED, EXIT_OK, ServerUnreachableError, UsageError
from ._display import BulkDisplay, Out, TaskBars, demo_summary, report_lines, task_dict
from ._errors import unreachable, unreachable_text

__all__ = ["COMMANDS", "cmd_simulator"]

DEMO_PROMPTS = (
    ("a red fox in the snow, watercolor --ar 3:2", "U1,U2,U3,U4"),
    ("a lighthouse at dusk, oil painting", "U1,U2,U3,U4"),
    ("a paper crane on a desk, macro photo", "U1,U2"),
    ("a city of glass under the sea, concept art", "U1,U2"),
    ("an owl made of autumn leaves", ""),
    ("a tiny robot watering a bonsai, isometric", ""),
)


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


async def _cmd_imagine(args: argparse.Namespace, out: Out) -> int:
    _require(args.prompt, "PROMPT")
    buttons = _flag_value("--upscale", parse_actions, args.upscale)
    async with _client(args) as mj:
        submission = await mj.imagine(args.prompt)
        out.note(f"submitted imagine task {submission.task_id}")
        files: list[Path] = []
        with TaskBars(out) as bars:
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
            "task": task_dict(grid),
            "actions": {b: task_dict(t) for b, t in results.items()},
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


async def _cmd_action(args: argparse.Namespace, out: Out) -> int:
    mask = Path(args.mask) if args.mask is not None else None
    if args.prompt is not None:
        _require(args.prompt, "--prompt")
    async with _client(args) as mj:
        parent = await mj.fetch(args.task_id)
        with TaskBars(out) as bars:
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
        {"ok": True, "task": task_dict(task), "files": [str(f) for f in files]},
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


async def _cmd_download(args: argparse.Namespace, out: Out) -> int:
    async with _client(args) as mj:
        task = await mj.fetch(args.task_id)
        kind: MediaKind | None = "video" if args.video else None
        path = await mj.download(task, args.out, kind=kind, filename=file_stem(task))
    out.result(
        {"ok": True, "task": task_dict(task), "files": [str(path)]},
        [f"saved {path}"],
    )
    return EXIT_OK


async def _cmd_task(args: argparse.Namespace, out: Out) -> int:
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
                if wrong or unreachable(error) is not None:
                    raise
            with TaskBars(out) as bars:
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
        {"ok": True, "task": task_dict(task)},
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
                why = unreachable_text(failure) or str(failure)
                raise ServerUnreachableError(
                    f"task {args.task_id} did not finish within {args.wait_timeout:g} s: "
                    f"the server stopped answering ({why})"
                ) from None
        except MJError:
            return


async def _cmd_seed(args: argparse.Namespace, out: Out) -> int:
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
    out: Out,
    jobs: Sequence[Job],
    out_dir: Path,
    **options: Any,
) -> BulkReport:
    if out.json:
        return await BulkRunner(mj, out_dir, **options).run(jobs)
    with BulkDisplay(out, len(jobs)) as display:
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


async def _cmd_batch(args: argparse.Namespace, out: Out) -> int:
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
    out.result(report.to_dict(), report_lines(report, out))
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


async def _cmd_demo(args: argparse.Namespace, out: Out) -> int:
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
        demo_summary(report, jobs, out)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_simulator(argv: Sequence[str]) -> int:
    from mjasync.simulator import serve

    if {"-h", "--help"} & set(argv):
        # The simulator's own help (every default shown), under this command's name.
        with suppress(SystemExit):
            serve(["--help"], prog="mjasync simulator")
        return EXIT_OK
    return serve(list(argv), prog="mjasync simulator")


COMMANDS: dict[str, Callable[[argparse.Namespace, Out], Coroutine[Any, Any, int]]] = {
    "demo": _cmd_demo,
    "imagine": _cmd_imagine,
    "action": _cmd_action,
    "task": _cmd_task,
    "seed": _cmd_seed,
    "download": _cmd_download,
    "batch": _cmd_batch,
}
