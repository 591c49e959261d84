"""``main``: parse, run the command on its own event loop, report any failure in one line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import anyio

from mjasync import MJError

from ._commands import COMMANDS, cmd_simulator
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, ErrorReport, ServerUnreachableError, UsageError
from ._display import Out
from ._errors import describe_error, exit_code
from ._parser import build_parser

__all__ = ["main"]


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
        return cmd_simulator(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    out = Out(bool(args.json), sys.stdout, sys.stderr, verbose=bool(args.verbose))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = COMMANDS[args.command]
    with _logging(bool(args.verbose), sys.stderr):
        try:
            return asyncio.run(_interruptible(command(args, out)))
        except KeyboardInterrupt:
            hint = "; rerun the same command to resume" if args.command == "batch" else ""
            out.error(ErrorReport(f"interrupted{hint}"))
            return EXIT_INTERRUPTED
        except (MJError, UsageError, ServerUnreachableError) as error:
            # Before OSError: TaskTimeoutError is a TimeoutError, TransportError a
            # ConnectionError, and both are OSErrors that are not about a local file.
            out.error(describe_error(error, args))
            return exit_code(error)
        except OSError as error:
            text = f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
            out.error(ErrorReport(text))
            return EXIT_USAGE
