"""A replicated Redis with Sentinel failover on loopback: a primary, replicas and three
Sentinels, real redis-server processes (the topology `spec.redis.managed.replicas: 3`
asks for, started by a test instead of local mode)."""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest

from .core import wait_until
from .ports import reserve_port
from .procs import Processes

MASTER = "pushcluster"
# Each Sentinel calls the primary down at its own time, the quorum's (the second) at
# `down_after_ms`: with one value for all, they reach +odown together, each votes for
# itself, and the retry comes after twice the failover timeout (operator's
# objects::sentinel::down_after_ms, which local mode and Kubernetes use).
DOWN_AFTER_STAGGER_MS = 750


class SentinelSet:
    def __init__(self, procs: Processes, replicas: int = 2, sentinels: int = 3, password: str = "ha-secret",
                 down_after_ms: int = 2000):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server not installed (apt-get install redis-server; .ci/setup does it)")
        self.procs = procs
        self.password = password
        self.down_after_ms = down_after_ms
        self.ports = [reserve_port() for _ in range(replicas + 1)]
        self.sentinel_ports = [reserve_port() for _ in range(sentinels)]
        self.by_port: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """The push-server's PUSH_REDIS_URL (its host is replaced by the Sentinels' primary)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def sentinels(self) -> str:
        """The push-server's PUSH_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def env(self) -> dict:
        """What a push-server needs to follow this Redis (contract env keys)."""
        return {"REDIS_PASSWORD": self.password, "REDIS_SENTINELS": self.sentinels,
                "REDIS_SENTINEL_MASTER": MASTER}

    def start(self) -> "SentinelSet":
        primary = self.ports[0]
        for port in self.ports:
            self._start_redis(port, None if port == primary else primary)
        for port in self.ports[1:]:
            wait_until(lambda p=port: self.info(p).get("master_link_status") == "up", 15,
                       f"replica {port} in sync")
        for index, port in enumerate(self.sentinel_ports):
            conf = self.procs.log_dir / f"sentinel-{port}.conf"
            down_after = self.down_after_ms + (index - 1) * DOWN_AFTER_STAGGER_MS
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.procs.log_dir}",
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2",
                f"sentinel auth-pass {MASTER} {self.password}",
                f"sentinel down-after-milliseconds {MASTER} {down_after}",
                f"sentinel failover-timeout {MASTER} 5000",
                f"sentinel parallel-syncs {MASTER} 1", ""]))
            self.procs.start(["redis-server", conf, "--sentinel"], name=f"sentinel-{port}")
        # Ready to fail over: every Sentinel sees the replicas and the other Sentinels.
        others = len(self.sentinel_ports) - 1
        for port in self.sentinel_ports:
            wait_until(lambda p=port: self._count(p, "replicas") == len(self.ports) - 1
                       and self._count(p, "sentinels") == others, 20, f"sentinel {port} sees the set")
        return self

    def _start_redis(self, port: int, replica_of: int | None) -> None:
        # A directory of its own: a replica's full sync writes dump.rdb there, and a
        # redis-server loads a dump.rdb it finds at start (in the repository's root, a
        # later test's Redis started with an earlier test's keys).
        data = self.procs.log_dir / f"redis-{port}"
        data.mkdir(exist_ok=True)
        args = ["redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", data,
                "--save", "", "--appendonly", "no",
                "--requirepass", self.password, "--masterauth", self.password,
                "--maxmemory-policy", "noeviction",
                # A replica re-pointed by a failover gets its data at once, not after 5 s.
                "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", replica_of]
        self.by_port[port] = self.procs.start(args, name=f"redis-{port}")
        wait_until(lambda: self.ping(port), 10, f"redis-server on {port}", process=self.by_port[port])

    def cli(self, port: int, *args, password: bool = True) -> str:
        auth = ["--no-auth-warning", "-a", self.password] if password else []
        return subprocess.run(["redis-cli", "-p", str(port), *auth, *map(str, args)], capture_output=True,
                              text=True, timeout=10).stdout.strip()

    def ping(self, port: int) -> bool:
        return self.cli(port, "PING") == "PONG"

    def info(self, port: int) -> dict:
        text = self.cli(port, "INFO", "replication")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _count(self, sentinel_port: int, what: str) -> int:
        out = self.cli(sentinel_port, "SENTINEL", what, MASTER, password=False)
        return sum(1 for line in out.splitlines() if line == "name")

    def primary(self) -> int | None:
        """The primary's port as the Sentinels name it."""
        for port in self.sentinel_ports:
            out = self.cli(port, "SENTINEL", "get-master-addr-by-name", MASTER, password=False).split()
            if len(out) == 2:
                return int(out[1])
        return None

    def kill(self, port: int) -> None:
        """SIGKILL: an outage, not a shutdown."""
        proc = self.by_port[port]
        Processes.signal(proc, signal.SIGKILL)
        proc.wait(timeout=5)

    def restart_as_replica(self, port: int) -> None:
        """Starts a killed redis-server again, as a replica of the primary now."""
        primary = self.primary()
        assert primary is not None and primary != port, primary
        self._start_redis(port, primary)
