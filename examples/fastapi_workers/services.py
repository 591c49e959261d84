"""Redis and a simulated proxy for the example app, in one command; Ctrl-C stops both.

    python examples/fastapi_workers/services.py [--redis-port 6379] [--sim-port 8080]

Redis keeps nothing on disk. The simulator (``python -m mjasync.simulator``) speaks the
PLUS dialect, calls every submit's notifyHook back, and runs jobs 5x faster than real.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--sim-port", type=int, default=8080)
    parser.add_argument("--time-scale", default="0.2", help="simulated job speed (default 0.2)")
    args = parser.parse_args(argv)
    # `kill` (SIGTERM) stops both as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mjasync-redis-") as workdir:
        redis = subprocess.Popen(  # noqa: S603 (a fixed argv, no shell)
            [
                redis_server,
                "--port", str(args.redis_port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", workdir,
            ],
        )  # fmt: skip
        sim = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "mjasync.simulator",
                "--port", str(args.sim_port),
                "--time-scale", args.time_scale,
                "--slots", "50",
                "--queue-size", "200",
            ],
        )  # fmt: skip
        print(
            f"Redis: redis://127.0.0.1:{args.redis_port}/0   "
            f"simulator: http://127.0.0.1:{args.sim_port}   (Ctrl-C stops both)",
            flush=True,
        )
        try:
            while redis.poll() is None and sim.poll() is None:
                try:
                    sim.wait(0.5)
                except subprocess.TimeoutExpired:
                    continue
        except KeyboardInterrupt:
            pass
        finally:
            for process in (sim, redis):
                if process.poll() is None:
                    process.terminate()
            for process in (sim, redis):
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
