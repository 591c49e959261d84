"""The ``mjasync`` argument parser: global flags before or after the command, one-line errors."""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

import mjasync

from ._common import AUTH_STYLES, EXIT_USAGE

__all__ = ["DEMO_DIALECTS", "build_parser"]

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


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: scripts log stderr.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _common_options(suppress: bool) -> Parser:
    """The global flags, accepted before or after the command name."""
    parent = Parser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    group = parent.add_argument_group("connection (also MJ_BASE_URL, MJ_API_KEY, MJ_AUTH)")
    group.add_argument("--base-url", default=default, help="the proxy, e.g. https://host")
    group.add_argument("--api-key", default=default, help="the key (prefer MJ_API_KEY)")
    group.add_argument(
        "--auth",
        choices=AUTH_STYLES,
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
    parser = Parser(
        prog="mjasync",
        description="Midjourney via a midjourney-proxy server: single tasks, resumable "
        "bulk runs, and an offline simulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"mjasync {mjasync.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
