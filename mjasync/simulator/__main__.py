"""``python -m mjasync.simulator``: serve a simulated proxy until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from ._config import DIALECTS, MIDJOURNEY_PROGRESS, SimulatorConfig
from ._server import run_forever


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, shared with the project CLI's ``mjasync simulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m mjasync.simulator",
        description="Serve an offline midjourney-proxy simulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--dialect", choices=DIALECTS, default="plus")
    parser.add_argument("--api-key", default=None, help="require this key (per-dialect header)")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--queue-size", type=int, default=10)
    parser.add_argument("--remix", action="store_true", help="account remix on")
    parser.add_argument(
        "--oss-task-exists",
        action="store_true",
        help="oss: a repeated U answers code 21 '任务已存在' (novicezk before b146e94)",
    )
    timing = parser.add_argument_group("job timing (simulated seconds)")
    timing.add_argument("--queue-delay", type=float, default=1.0, metavar="S")
    timing.add_argument(
        "--start-delay", type=float, default=1.0, metavar="S", help="SUBMITTED to first step"
    )
    timing.add_argument("--step-delay", type=float, default=1.0, metavar="S")
    timing.add_argument("--progress-steps", type=int, default=4, metavar="N")
    timing.add_argument(
        "--progress-percents",
        type=_percents,
        default=(),
        metavar="LIST",
        help="IN_PROGRESS percentages, e.g. '15,31,62', or 'midjourney' for "
        + ",".join(map(str, MIDJOURNEY_PROGRESS)),
    )
    timing.add_argument(
        "--duration-jitter",
        type=float,
        default=0.0,
        metavar="F",
        help="each job's length varies by up to this fraction, e.g. 0.3 for ±30%%",
    )
    timing.add_argument(
        "--step-jitter",
        type=float,
        default=0.0,
        metavar="F",
        help="uneven gaps between progress steps (same total), e.g. 0.5",
    )
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
        help="simulated seconds between new-api's polls of its upstream (default 15)",
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
        "--trueai-user-core-size", type=int, default=0, metavar="N", help="'并发数已达上限' cap"
    )
    trueai.add_argument(
        "--trueai-user-queue-size", type=int, default=0, metavar="N", help="'队列数已达上限' cap"
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


def serve(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until Ctrl-C, return the exit status."""
    args = build_parser().parse_args(argv)
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
