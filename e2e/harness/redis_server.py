"""A real redis-server on a reserved port (harness.ports: it cannot report a port 0 bind)."""

import shutil
import signal
import socket
import subprocess

import pytest

from .core import wait_until
from .ports import reserve_port
from .procs import Processes


class RedisServer:
    def __init__(self, procs: Processes, port: int | None = None):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server not installed (apt-get install redis-server; .ci/setup does it)")
        self.procs = procs
        self.port = port or reserve_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        self.proc = self.procs.start(
            ["redis-server", "--bind", "127.0.0.1", "--port", self.port, "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            name=f"redis-{self.port}",
        )
        wait_until(self.ping, 10, f"redis-server on {self.port}", process=self.proc)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.proc is not None:
            Processes.signal(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()

    def publish(self, channel: str, message: str) -> int:
        """PUBLISH; returns how many subscribers (nodes) got it."""
        return int(self.cli("PUBLISH", channel, message) or 0)
