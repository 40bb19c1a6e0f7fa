"""What the Python benchmarks share: a free loopback port, polling with a deadline, and
redis-cli against a local redis-server."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what: str, check, timeout: float = 20.0, expected: tuple = (subprocess.SubprocessError,)) -> None:
    """Polls `check` until it is true; exits naming `what` at the deadline (errors of the
    `expected` kinds count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except expected:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} not within {timeout} s")


def cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout
