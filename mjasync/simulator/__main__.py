"""``python -m mjasync.simulator``: serve a simulated proxy until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from ._config import DIALECTS, SimulatorConfig
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
    return parser


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
