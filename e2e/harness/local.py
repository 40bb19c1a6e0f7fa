"""Helpers of the local-mode suites (e2e/local, e2e/autoscale): `push-operator local`
as a context manager, publishing, nginx's access log, metrics, and the official
socket.io clients as these suites run them. Local mode's interface to tests (its
stdout lines, the state file's node phases) comes from the contract crate."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests
import yaml

from .core import REPO, binary_env_var, contract, find_binary
from .node_clients import NodeClients
from .ports import reserve_port
from .procs import Processes
from .push_server import fanout_override

CONTRACT = contract()
LOCAL_MODE = CONTRACT["local_mode"]
# Node phases of the state file: `cluster.nodes(READY)`.
READY = LOCAL_MODE["PHASE_READY"]
DRAINING = LOCAL_MODE["PHASE_DRAINING"]
# The official clients of these suites behave as the demo page does: reconnect at once
# (100-500 ms), and connect again after a server-side disconnect.
RECONNECTING = {"reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500,
                "randomizationFactor": 0.2, "rejoinAfterServerDisconnect": True}


def binary(name: str) -> str:
    """PUSH_<NAME>_BIN, else $CARGO_TARGET_DIR/debug/<name>, else <repo>/target/debug/<name>."""
    path = find_binary(name)
    if path is None:
        raise AssertionError(f"{name} not built: run cargo build --workspace --bins (or set {binary_env_var(name)})")
    return str(path)


def manifest(name: str, replicas: int, drain_seconds: int, affinity: str) -> dict:
    """A PushCluster for local mode; affinity `address` (Service ClientIP) or `cookie` (Ingress)."""
    exposure: dict = {"service": {}}
    if affinity == "cookie":
        exposure = {"host": "push.localhost", "ingress": {"className": "nginx", "affinity": "cookie", "cookieName": "pc-node"}}
    spec = {"replicas": replicas, "drainSeconds": drain_seconds, "redis": {"managed": {}}, "exposure": exposure}
    if fanout_override():
        # E2E_FANOUT=log: every node reads the whole log (the manifest configures them).
        spec["delivery"] = {"fanout": fanout_override()}
    return {
        "apiVersion": "pushcluster.dev/v1alpha1",
        "kind": "PushCluster",
        "metadata": {"name": name},
        "spec": spec,
    }


class LocalCluster:
    """`push-operator local` on a manifest in `workdir`; stops it and checks nothing is left."""

    def __init__(self, workdir: Path, spec: dict, extra_args: tuple[str, ...] = (), env: dict | None = None):
        self.workdir = workdir
        self.extra_env = env or {}
        self.manifest_path = workdir / "cluster.yaml"
        self.state_path = workdir / "state.json"
        self.spec = spec
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.endpoint = ""
        self.api_endpoint = ""  # where backends publish (never the client endpoint)
        self.token = ""
        self.seen_pids: set[int] = set()

    def write_manifest(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.spec))
        tmp.replace(self.manifest_path)

    def __enter__(self) -> LocalCluster:
        self.write_manifest()
        env = dict(os.environ, PUSH_SERVER_BIN=binary("push-server"), PUSH_OPERATOR_LOG="info", **self.extra_env)
        self.log = open(self.workdir / "operator.log", "w")
        self.proc = subprocess.Popen(
            # Not `--port 0`: a port from the ephemeral range, probed and released, can be
            # any outgoing connection's source port before nginx binds it (CI saw nginx
            # fail to bind for 90 s). Two ports: the front door, then the API front door.
            [binary("push-operator"), "local", "-f", str(self.manifest_path), "--port", str(reserve_port(count=2)),
             "--state-file", str(self.state_path), "--secrets-dir", str(self.workdir / "secrets"), *self.extra_args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, start_new_session=True,
            cwd=REPO,  # as `make run`: push-server finds the demo page's client bundle from here
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        try:
            deadline = time.monotonic() + 90
            while not (self.endpoint and self.api_endpoint):
                if self.proc.poll() is not None:
                    raise AssertionError(f"push-operator local exited ({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(f"no endpoint line within 90 s:\n{self.log_tail()}") from None
                if line.startswith(LOCAL_MODE["API_TOKEN_PREFIX"]):
                    self.token = line.removeprefix(LOCAL_MODE["API_TOKEN_PREFIX"]).strip()
                elif line.startswith(LOCAL_MODE["ENDPOINT_PREFIX"]):
                    self.endpoint = line.removeprefix(LOCAL_MODE["ENDPOINT_PREFIX"]).strip()
                elif line.startswith(LOCAL_MODE["API_ENDPOINT_PREFIX"]):
                    self.api_endpoint = line.removeprefix(LOCAL_MODE["API_ENDPOINT_PREFIX"]).strip()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 40) -> str:
        self.log.flush()
        return "\n".join((self.workdir / "operator.log").read_text().splitlines()[-n:])

    def state(self) -> dict:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        for pid in self._pids(data):
            self.seen_pids.add(pid)
        return data

    @staticmethod
    def _pids(data: dict) -> list[int]:
        pids = [n["pid"] for n in data.get("nodes", []) if n.get("pid")]
        for part in ("nginx", "redis"):
            if data.get(part):
                pids.append(data[part]["pid"])
        # Every redis-server and Sentinel (replicated managed Redis), restarted ones too.
        pids.extend(r["pid"] for r in data.get("redis_servers", []) if r.get("pid"))
        return pids

    def nodes(self, phase: str | None = None) -> list[dict]:
        return [n for n in self.state().get("nodes", []) if phase is None or n["phase"] == phase]

    def set_replicas(self, replicas: int) -> None:
        self.spec["spec"]["replicas"] = replicas
        self.write_manifest()

    def access_log(self) -> list[str]:
        path = Path(self.state()["workdir"]) / "nginx" / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def publish(self, body: dict) -> requests.Response:
        return requests.post(f"{self.api_endpoint}{CONTRACT['paths']['PUBLISH']}", json=body,
                             headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def publish_redis(self, body: dict) -> None:
        """PUBLISH on the Redis channel backends use, with the real redis-cli."""
        redis = self.state()["redis"]
        host, port = redis["addr"].rsplit(":", 1)
        out = subprocess.run(
            ["redis-cli", "-h", host, "-p", port, "--no-auth-warning", "-a", redis["password"],
             "PUBLISH", CONTRACT["defaults"]["REDIS_CHANNEL"], json.dumps(body)],
            capture_output=True, text=True, timeout=10, check=True)
        assert int(out.stdout.strip()) >= 1, f"nobody subscribed to the channel: {out.stdout}"

    def connections(self, node: dict) -> int:
        """push_connections summed over transports, from the node's admin port."""
        text = requests.get(f"http://{node['admin']}{CONTRACT['paths']['METRICS']}", timeout=5).text
        metric = CONTRACT["metrics"]["CONNECTIONS"]
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(metric + "{") or line.startswith(metric + " ")))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the group after a deadline; asserts no child survived."""
        if not self.proc:
            return
        self.state()
        Processes.stop(self.proc, grace=30)
        self.proc = None
        self.log.close()
        # Every child leads its own process group (nginx workers are in the master's).
        survivors = _live_members(self.seen_pids)
        for pgid in {pgid for _, pgid in survivors}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not survivors, f"processes left behind by push-operator local (pid, group): {survivors}"


def _live_members(groups: set[int]) -> list[tuple[int, int]]:
    """(pid, pgid) of every live, non-zombie process in one of `groups`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgid = fields[0], int(fields[2])
        if pgid in groups and state != "Z":
            out.append((int(entry.name), pgid))
    return out


def clients(processes: Processes, spec: dict, name: str = "js-clients") -> NodeClients:
    """Official socket.io clients (e2e/clients/client.js) reconnecting as the demo page does
    (`RECONNECTING`; the spec may override it)."""
    return NodeClients(processes, {**RECONNECTING, **spec}, name=name)


ARTIFACTS = REPO / "e2e" / "artifacts"


def record_measurement(name: str, value: object) -> None:
    """Adds a measured figure to e2e/artifacts/local-measurements.json (and prints it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "local-measurements.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"measured {name}: {value}")
