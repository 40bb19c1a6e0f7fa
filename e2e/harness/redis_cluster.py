"""A Redis Cluster on loopback: real redis-server processes in cluster mode joined by
`redis-cli --cluster create` (three primaries, each with replicas), failing over by the
cluster's own mechanism (a replica promoted once the majority of primaries agree its
primary failed)."""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest

from .core import contract, wait_until
from .ports import reserve_port
from .procs import Processes
from .redis_tls import TlsFiles, make_tls

CHANNEL = contract()["defaults"]["REDIS_CHANNEL"]


class RedisClusterSet:
    def __init__(self, procs: Processes, primaries: int = 3, replicas: int = 2, password: str = "cluster-secret",
                 node_timeout_ms: int = 1000, tls: bool = False):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server not installed (apt-get install redis-server; .ci/setup does it)")
        self.procs = procs
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        self.ports = [reserve_port() for _ in range(primaries * (replicas + 1))]
        # The cluster bus: port + 10000 by default, which may be in the kernel's ephemeral
        # range (taken by any outgoing connection); reserved like the others instead.
        self.bus_ports = {port: reserve_port() for port in self.ports}
        self.by_port: dict[int, subprocess.Popen] = {}
        # With TLS every connection is TLS: clients, replication and the cluster bus.
        self.tls: TlsFiles | None = make_tls(procs.log_dir, "cluster") if tls else None

    @property
    def url(self) -> str:
        """The push-server's PUSH_REDIS_URL (its host is replaced by the slot's primary)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.ports[0]}"

    @property
    def seeds(self) -> str:
        """The push-server's PUSH_REDIS_CLUSTER: every node (any one would do)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def env(self) -> dict:
        """What a push-server needs to use this cluster (contract env keys)."""
        env = {"REDIS_PASSWORD": self.password, "REDIS_CLUSTER": self.seeds}
        return {**env, "REDIS_CA_FILE": str(self.tls.ca)} if self.tls else env

    def start(self) -> "RedisClusterSet":
        for port in self.ports:
            self._start_redis(port)
        out = subprocess.run(
            ["redis-cli", *self._cli_tls(), "--no-auth-warning", "-a", self.password, "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        for port in self.ports:
            wait_until(lambda p=port: self.cluster_info(p).get("cluster_state") == "ok", 20,
                       f"node {port} seeing the cluster ok")
        # Ready to fail over: every replica in sync with its primary.
        for port in self.ports:
            wait_until(lambda p=port: self.info(p).get("role") == "master"
                       or self.info(p).get("master_link_status") == "up", 20, f"replica {port} in sync")
        return self

    def _start_redis(self, port: int) -> None:
        # A directory of its own: nodes.conf (the node's identity and view of the
        # cluster) survives a restart there, so a killed node comes back as itself.
        data = self.procs.log_dir / f"cluster-{port}"
        data.mkdir(exist_ok=True)
        listen = (["--port", 0, "--tls-port", port, "--tls-cluster", "yes", "--tls-replication", "yes",
                   *self.tls.server_args()] if self.tls else ["--port", port])
        args = ["redis-server", "--bind", "127.0.0.1", *listen, "--dir", data,
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", self.bus_ports[port],
                "--cluster-node-timeout", self.node_timeout_ms,
                "--save", "", "--appendonly", "no",
                "--requirepass", self.password, "--masterauth", self.password,
                "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0"]
        self.by_port[port] = self.procs.start(args, name=f"cluster-{port}")
        wait_until(lambda: self.cli(port, "PING") == "PONG", 10, f"redis-server on {port}",
                   process=self.by_port[port])

    def _cli_tls(self) -> list:
        return [str(a) for a in self.tls.cli_args()] if self.tls else []

    def cli(self, port: int, *args) -> str:
        return subprocess.run(["redis-cli", *self._cli_tls(), "-p", str(port), "--no-auth-warning", "-a", self.password,
                               *map(str, args)], capture_output=True, text=True, timeout=10).stdout.strip()

    def info(self, port: int) -> dict:
        text = self.cli(port, "INFO", "replication")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def cluster_info(self, port: int) -> dict:
        text = self.cli(port, "CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def alive(self) -> list[int]:
        return [p for p, proc in self.by_port.items() if proc.poll() is None]

    def slot(self, key: str) -> int:
        return int(self.cli(self.alive()[0], "CLUSTER", "KEYSLOT", key))

    def primary_of(self, slot: int) -> int | None:
        """The port of the primary serving `slot`, as the first live node's CLUSTER NODES
        says (`None` while that primary is marked failed)."""
        for line in self.cli(self.alive()[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 8 or "master" not in fields[2].split(",") or "fail" in fields[2].split(","):
                continue
            for served in fields[8:]:
                first, _, last = served.partition("-")
                if first.isdigit() and int(first) <= slot <= int(last or first):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        return None

    def primary(self, tag: str = CHANNEL) -> int | None:
        """The primary serving the push cluster's keys (all carry the hash tag `{tag}`)."""
        return self.primary_of(self.slot(tag))

    def kill(self, port: int) -> None:
        """SIGKILL: an outage, not a shutdown."""
        proc = self.by_port[port]
        Processes.signal(proc, signal.SIGKILL)
        proc.wait(timeout=5)

    def restart_as_replica(self, port: int) -> None:
        """Starts a killed node again: it rejoins as itself (its nodes.conf) and, its slots
        taken over meanwhile, as a replica of the primary that took them."""
        self._start_redis(port)
