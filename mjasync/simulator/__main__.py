"""``python -m mjasync.simulator``: serve a simulated proxy until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import re
import sys

from ._config import DIALECTS, MIDJOURNEY_PROGRESS, Faults, SimulatorConfig
from ._server import run_forever


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default at the end of its help; the description's line breaks kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: {_shown(action)})"


def _shown(action: argparse.Action) -> str:
    """A default as a user would type it; a flag's is "off"."""
    value = action.default
    if action.nargs == 0:
        return "off"
    if value is None or value == [] or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{item:g}" for item in value)
    return str(value)


_DESCRIPTION = """\
Serve an offline midjourney-proxy simulator until Ctrl-C.

Durations are simulated seconds: the server sleeps each one times --time-scale in real
seconds (0.05 makes a 60-second task take 3 seconds). Point a client at the URL it prints.
"""

_EPILOG = """\
examples:
  python -m mjasync.simulator --dialect trueai --api-key K --time-scale 0.05
  python -m mjasync.simulator --fault-server-error 0.1 --fault-routes imagine,fetch
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, shared with the project CLI's ``mjasync simulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m mjasync.simulator",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server.add_argument("--port", type=int, default=8080, help="port to listen on")
    server.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="plus",
        help="the server to imitate: plus (midjourney-proxy-plus), oss (novicezk's "
        "midjourney-proxy), trueai (trueai-org's midjourney-proxy) or newapi (the new-api "
        "relay)",
    )
    server.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="require this key, read the way the dialect reads it (mj-api-secret on "
        "oss/plus; Authorization or mj-api-secret on trueai; any style on newapi); "
        "without one every request is let in",
    )
    timing = parser.add_argument_group("timing and capacity")
    timing.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="real seconds per simulated second (0.05: twenty times faster)",
    )
    timing.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of every random choice and fault"
    )
    timing.add_argument(
        "--slots", type=int, default=3, metavar="N", help="tasks the account runs at once"
    )
    timing.add_argument(
        "--queue-size",
        type=int,
        default=10,
        metavar="N",
        help="tasks that may wait for a slot; past that a submit is refused as queue full",
    )
    account = parser.add_argument_group("account and server behaviour")
    account.add_argument(
        "--remix",
        action="store_true",
        help="remix mode on: variations and custom zoom open a modal for a new prompt",
    )
    account.add_argument(
        "--oss-task-exists",
        action="store_true",
        help="oss: a repeated U answers code 21 '任务已存在' (novicezk before b146e94)",
    )
    job = parser.add_argument_group("job timing (simulated seconds)")
    job.add_argument(
        "--queue-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="time in the queue before SUBMITTED",
    )
    job.add_argument(
        "--start-delay", type=float, default=1.0, metavar="S", help="SUBMITTED to first step"
    )
    job.add_argument(
        "--step-delay", type=float, default=1.0, metavar="S", help="time between progress steps"
    )
    job.add_argument(
        "--progress-steps", type=int, default=4, metavar="N", help="IN_PROGRESS updates per job"
    )
    job.add_argument(
        "--progress-percents",
        type=_percents,
        default=(),
        metavar="LIST",
        help="IN_PROGRESS percentages, e.g. '15,31,62', or 'midjourney' for "
        + ",".join(map(str, MIDJOURNEY_PROGRESS)),
    )
    job.add_argument(
        "--duration-jitter",
        type=float,
        default=0.0,
        metavar="F",
        help="each job's length varies by up to this fraction, e.g. 0.3 for ±30%%",
    )
    job.add_argument(
        "--step-jitter",
        type=float,
        default=0.0,
        metavar="F",
        help="uneven gaps between progress steps (same total), e.g. 0.5",
    )
    _add_fault_options(parser)
    newapi = parser.add_argument_group("new-api operator settings")
    newapi.add_argument(
        "--newapi-notify", action="store_true", help="forward notifyHook (MjNotifyEnabled)"
    )
    newapi.add_argument(
        "--newapi-account-filter",
        action="store_true",
        help="forward accountFilter (MjAccountFilterEnabled)",
    )
    newapi.add_argument(
        "--newapi-mode-clear",
        action="store_true",
        help="strip --fast/--relax/--turbo from prompts (MjModeClearEnabled)",
    )
    newapi.add_argument(
        "--no-newapi-forward-url",
        dest="newapi_forward_url",
        action="store_false",
        help="show the upstream's image URLs, not /mj/image/{id} (MjForwardUrlEnabled off)",
    )
    newapi.add_argument(
        "--newapi-sync-interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="simulated seconds between new-api's polls of its upstream",
    )
    trueai = parser.add_argument_group("trueai settings")
    trueai.add_argument(
        "--trueai-user-key",
        dest="trueai_user_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="an extra, non-admin key (repeatable); --api-key is the admin's",
    )
    trueai.add_argument(
        "--trueai-no-upload-base64",
        dest="trueai_upload_base64",
        action="store_false",
        help="refuse base64 uploads with '禁止上传' (EnableUserCustomUploadBase64 off)",
    )
    trueai.add_argument(
        "--trueai-fill-official-cdn",
        action="store_true",
        help="fill videoUrl/videoUrls/imageUrls (EnableFillOfficialCdn)",
    )
    trueai.add_argument(
        "--trueai-user-core-size",
        type=int,
        default=0,
        metavar="N",
        help="tasks one user may run at once, past that '并发数已达上限' (0: no cap)",
    )
    trueai.add_argument(
        "--trueai-user-queue-size",
        type=int,
        default=0,
        metavar="N",
        help="tasks one user may have waiting, past that '队列数已达上限' (0: no cap)",
    )
    trueai.add_argument(
        "--trueai-rate-limit",
        dest="trueai_ip_rate_limit",
        action="append",
        default=[],
        type=_rate_rule,
        metavar="PATTERN:WINDOW:MAX",
        help="IP rate limit rule, e.g. '*/mj/submit/*:3:1' (HTTP 429; repeatable)",
    )
    trueai.add_argument(
        "--trueai-black-rate-limit",
        dest="trueai_ip_black_rate_limit",
        action="append",
        default=[],
        type=_rate_rule,
        metavar="PATTERN:WINDOW:MAX",
        help="IP black-list rate limit rule (HTTP 403, then blocked; repeatable)",
    )
    return parser


# Faults fields that are durations in real seconds, not probabilities.
_FAULT_SECONDS = re.compile(r"^retry_after$|_seconds$")
# What each fault flag does; a field added to Faults later gets the first sentence of its
# bullet in the Faults docstring instead.
_FAULT_HELP = {
    "server_error": "answer HTTP 500, 502 or 503 (empty body) instead of handling",
    "rate_limit": "answer HTTP 429 with Retry-After and an empty body",
    "retry_after": "the Retry-After that --fault-rate-limit sends, in real seconds",
    "drop": "abort the TCP connection without any answer",
    "latency": "simulated seconds slept before every request, drawn between MIN and MAX",
    "malformed": "answer 200 with the real body cut short into invalid JSON",
    "task_failure": "an accepted task ends in FAILURE with a Midjourney-like reason",
    "stuck": "an accepted task stays IN_PROGRESS forever (and keeps its slot)",
    "submit_fault_before": "a submit fails (500 or a dropped connection) before any task "
    "is created",
    "submit_fault_after": "a submit creates its task, then answers 500 or drops the "
    "connection: the client cannot know the task exists",
    "notify_drop": "a notifyHook delivery is skipped",
    "notify_duplicate": "a notifyHook delivery is sent twice",
    "notify_reorder": "a notifyHook delivery is delayed until after later ones",
    "routes": "only these routes get the probabilistic faults, e.g. imagine,fetch "
    "(default: every /mj route)",
}
_BULLET = re.compile(r"^\s*\*\s+(?P<names>(?:``\w+``(?:\s*/\s*)?)+):\s*(?P<text>.*)$")


def _fault_help() -> dict[str, str]:
    """Each `Faults` field's first sentence, from its docstring's bullet list."""
    helps: dict[str, str] = {}
    current: list[str] = []
    text: list[str] = []

    def flush() -> None:
        sentence = " ".join(text).split(". ")[0].rstrip(".")
        for name in current:
            helps[name] = sentence.replace("``", "")

    for line in (Faults.__doc__ or "").splitlines():
        match = _BULLET.match(line)
        if match:
            flush()
            current = re.findall(r"``(\w+)``", match["names"])
            text = [match["text"].strip()]
        elif current and line.strip() and not line.strip().startswith("*"):
            text.append(line.strip())
        else:
            flush()
            current, text = [], []
    flush()
    return helps


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    """One ``--fault-NAME`` per `Faults` field: new fault kinds get their flag by themselves."""
    group = parser.add_argument_group(
        "faults",
        "Misbehaviour on purpose, to test clients. Each P is a probability in [0, 1],\n"
        "rolled for every request (or task) with --seed; see mjasync.simulator.Faults.",
    )
    helps = {**_fault_help(), **_FAULT_HELP}
    for field in dataclasses.fields(Faults):
        flag = "--fault-" + field.name.replace("_", "-")
        default = field.default
        described = helps.get(field.name, f"see Faults.{field.name}")
        if field.name == "routes":
            group.add_argument(
                flag,
                dest="fault_routes",
                type=_routes,
                default=None,
                metavar="ROUTE[,ROUTE...]",
                help=described,
            )
        elif field.name == "latency":
            group.add_argument(
                flag,
                dest="fault_latency",
                type=_span,
                default=default,
                metavar="MIN,MAX",
                help=described,
            )
        elif _FAULT_SECONDS.search(field.name):
            group.add_argument(
                flag,
                dest=f"fault_{field.name}",
                type=float,
                default=default,
                metavar="SECONDS",
                help=described,
            )
        else:
            group.add_argument(
                flag,
                dest=f"fault_{field.name}",
                type=float,
                default=default,
                metavar="P",
                help=described,
            )


def _routes(text: str) -> frozenset[str]:
    routes = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not routes:
        raise argparse.ArgumentTypeError("expected ROUTE[,ROUTE...], e.g. imagine,fetch")
    return routes


def _span(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    try:
        return (float(low), float(high if sep else low))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected MIN,MAX in seconds, e.g. 0.5,2") from exc


def _faults(args: argparse.Namespace) -> Faults:
    values = {
        field.name: getattr(args, f"fault_{field.name}")
        for field in dataclasses.fields(Faults)
        if getattr(args, f"fault_{field.name}", None) is not None
    }
    return Faults(**values)


def _rate_rule(text: str) -> tuple[str, float, int]:
    pattern, sep, rest = text.rpartition(":")
    path, sep2, window = pattern.rpartition(":")
    if not sep or not sep2 or not path:
        raise argparse.ArgumentTypeError("expected PATTERN:WINDOW:MAX, e.g. '*/mj/submit/*:3:1'")
    try:
        return path, float(window), int(rest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("WINDOW is seconds and MAX an integer") from exc


def _percents(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "midjourney":
        return MIDJOURNEY_PROGRESS
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected percentages such as '15,31,62'") from exc


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """A :class:`SimulatorConfig` from parsed arguments."""
    return SimulatorConfig(
        faults=_faults(args),
        dialect=args.dialect,
        api_key=args.api_key,
        time_scale=args.time_scale,
        seed=args.seed,
        slots=args.slots,
        queue_size=args.queue_size,
        remix=args.remix,
        queue_delay=args.queue_delay,
        start_delay=args.start_delay,
        step_delay=args.step_delay,
        progress_steps=args.progress_steps,
        progress_percents=args.progress_percents,
        duration_jitter=args.duration_jitter,
        step_jitter=args.step_jitter,
        oss_task_exists=args.oss_task_exists,
        newapi_notify=args.newapi_notify,
        newapi_account_filter=args.newapi_account_filter,
        newapi_mode_clear=args.newapi_mode_clear,
        newapi_forward_url=args.newapi_forward_url,
        newapi_sync_interval=args.newapi_sync_interval,
        trueai_user_keys=frozenset(args.trueai_user_keys),
        trueai_upload_base64=args.trueai_upload_base64,
        trueai_fill_official_cdn=args.trueai_fill_official_cdn,
        trueai_user_core_size=args.trueai_user_core_size,
        trueai_user_queue_size=args.trueai_user_queue_size,
        trueai_ip_rate_limit=tuple(args.trueai_ip_rate_limit),
        trueai_ip_black_rate_limit=tuple(args.trueai_ip_black_rate_limit),
    )


def serve(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv``, serve until Ctrl-C, return the exit status.

    *prog* names the command in help and errors (``mjasync simulator``).
    """
    parser = build_parser()
    if prog is not None:
        parser.prog = prog
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_forever(config, args.host, args.port))
    except OSError as exc:  # the port is taken, the host is not ours...
        print(
            f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(serve())
