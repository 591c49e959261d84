"""A private redis-server for tests: one process on a free loopback port, no persistence.

The `redis_server` fixture (tests/conftest.py) starts one per test. Without redis-server
installed the tests that use it skip, except under CI=true, where they fail: .ci/run
installs it, so a skip there would hide a broken bus.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _shared import in_ci

PASSWORD = "s3cret-pw"


def redis_server_exe() -> str:
    """The redis-server executable; skips the test (fails it under CI) when missing."""
    exe = shutil.which("redis-server")
    if exe is None:
        if in_ci():
            pytest.fail("redis-server is not installed, and CI must run the Redis tests")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return exe


class RedisServer:
    """One redis-server process on 127.0.0.1, with a password, no persistence."""

    def __init__(self, exe: str, port: int, workdir: Path) -> None:
        self.exe = exe
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--requirepass", PASSWORD,
                "--dir", str(self.workdir),
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not self._answers():
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else b""
                pytest.fail(f"redis-server exited: {stderr.decode(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 5 s")
            time.sleep(0.005)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                # "-NOAUTH ..." is an answer too: the server is up and wants the password.
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
