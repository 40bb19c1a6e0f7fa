"""Helpers of the local-mode suite: `push-operator local` as a context manager,
swarms of official socket.io clients, publishing, nginx's access log, metrics.

(A uniquely named module, not conftest.py, so tests can import it while other
suites have conftest.py files of their own.)"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # e2e/: the shared harness
from harness import REPO, contract, find_binary, wait_until  # noqa: E402

CONTRACT = contract()
__all__ = ["REPO", "wait_until", "LocalCluster", "Swarm", "manifest", "record_measurement"]


def binary(name: str) -> str:
    """PUSH_<NAME>_BIN, else $CARGO_TARGET_DIR/debug/<name>, else <repo>/target/debug/<name>."""
    path = find_binary(name, f"{name.upper().replace('-', '_')}_BIN")
    if path is None:
        raise AssertionError(f"{name} not built: run cargo build --workspace --bins (or set {name.upper().replace('-', '_')}_BIN)")
    return str(path)


def manifest(name: str, replicas: int, drain_seconds: int, affinity: str) -> dict:
    """A PushCluster for local mode; affinity `address` (Service ClientIP) or `cookie` (Ingress)."""
    exposure: dict = {"service": {}}
    if affinity == "cookie":
        exposure = {"host": "push.localhost", "ingress": {"className": "nginx", "affinity": "cookie", "cookieName": "pc-node"}}
    return {
        "apiVersion": "pushcluster.dev/v1alpha1",
        "kind": "PushCluster",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "drainSeconds": drain_seconds, "redis": {"managed": {}}, "exposure": exposure},
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
            [binary("push-operator"), "local", "-f", str(self.manifest_path), "--port", "0",
             "--state-file", str(self.state_path), "--secrets-dir", str(self.workdir / "secrets"), *self.extra_args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, start_new_session=True,
            cwd=REPO,  # as `make run`: push-server finds the demo page's client bundle from here
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        try:
            deadline = time.monotonic() + 90
            while not self.endpoint:
                if self.proc.poll() is not None:
                    raise AssertionError(f"push-operator local exited ({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(f"no endpoint line within 90 s:\n{self.log_tail()}") from None
                key, _, value = line.partition(": ")
                if key == "api-token":
                    self.token = value.strip()
                elif key == "endpoint":
                    self.endpoint = value.strip()
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
        return requests.post(f"{self.endpoint}{CONTRACT['paths']['PUBLISH']}", json=body,
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
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
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


class Swarm:
    """`node swarm.js SPEC`: events collected by a reader thread."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(["node", str(HERE / "swarm.js"), json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def of(self, kind: str, **match: Any) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(lambda: self.of("ready"), timeout, f"{self.spec.get('count', 1)} clients connected "
                   f"(errors: {self.of('connect_error')[:3]})")

    def received(self, event: str) -> dict[int, list]:
        """Client index → data of every `event` it received, in order."""
        got: dict[int, list] = {i: [] for i in range(self.spec.get("count", 1))}
        for e in self.of("event", event=event):
            got[e["i"]].append(e["data"])
        return got

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
