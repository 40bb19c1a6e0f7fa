"""Helpers of the real-cluster suite: kubectl/helm against the cluster in
KUBECONFIG, polling with deadlines, and port-forwards that are always stopped
(the suite's fixtures: e2e/cluster/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from .core import REPO, contract, wait_until
from .kube import ControlPlane, ControlPlaneError, bin_dir
from .ports import reserve_port
from .procs import Processes
from .push_server import parse_metrics

T = TypeVar("T")
CONTRACT = contract()
CHART = REPO / "charts" / "pushcluster-operator"
EXAMPLE = REPO / "examples" / "chat.yaml"
CRD_NAME = "pushclusters.pushcluster.dev"


def tool(name: str) -> str:
    """kubectl: the one built with the control plane (v1.36.3) when there, else .tools/bin's;
    helm: .tools/bin's (both installed by .ci/setup)."""
    candidates = [bin_dir() / name] if name == "kubectl" else []
    candidates.append(REPO / ".tools" / "bin" / name)
    for local in candidates:
        if local.is_file():
            return str(local)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: run .ci/setup (installs it into .tools/bin)")
    return found


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([tool("kubectl"), *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def kubectl_json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def helm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def unreachable_reason() -> str | None:
    """Why the cluster in KUBECONFIG cannot be used, or None when one answers."""
    config = os.environ.get("KUBECONFIG")
    if not config or not any(Path(p).is_file() for p in config.split(os.pathsep) if p):
        return f"KUBECONFIG names no file ({config!r})"
    proc = kubectl("version", "-o", "json", "--request-timeout=10s", check=False, timeout=30)
    if proc.returncode != 0 or "serverVersion" not in proc.stdout:
        return f"no Kubernetes cluster reachable through {config}: {proc.stderr.strip()[:300]}"
    return None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180, interval: float = 2) -> T:
    """Polls until probe returns something truthy; fails naming `what` at the deadline."""
    return wait_until(probe, timeout=timeout, what=what, interval=interval)


@contextlib.contextmanager
def temporary_namespace(name: str):
    """A namespace for the duration of a fixture; deleted without waiting afterwards."""
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@contextlib.contextmanager
def embedded_control_plane(state: Path, node: str | None, what: str):
    """The embedded control plane (`node`: None, "agent" or "real"), KUBECONFIG pointing
    at it until the block ends; stopped then, its logs kept for a post-mortem (pytest
    prunes old tmp dirs)."""
    plane = ControlPlane(state)
    try:
        kubeconfig = plane.up(node=node)
    except ControlPlaneError as e:
        pytest.fail(f"the control plane with {what} did not start: {e}")
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        yield plane
    finally:
        if previous is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = previous
        plane.down(keep_state=True)


def wait_condition(kind: str, name: str, namespace: str, status: str = "True", type_: str = "Ready",
                   timeout: float = 60) -> dict:
    """Polls the object until its condition `type_` has `status`; returns the object."""
    def reached() -> dict | None:
        obj = kubectl_json("get", kind, name, "-n", namespace)
        return obj if (condition(obj, type_) or {}).get("status") == status else None

    return wait_for(f"{kind} {namespace}/{name}: {type_} {status}", reached, timeout=timeout, interval=0.5)


def pods_with_connections(pods: list[dict]) -> list[str]:
    """The push pods (reachable at their pod IPs) whose metrics count a client connection."""
    serving = []
    for pod in pods:
        text = requests.get(f"http://{pod['status']['podIP']}:{CONTRACT['defaults']['ADMIN_PORT']}"
                            f"{CONTRACT['paths']['METRICS']}", timeout=5).text
        if any(n == CONTRACT["metrics"]["CONNECTIONS"] and v > 0 for n, _, v in parse_metrics(text)):
            serving.append(pod["metadata"]["name"])
    return serving


def publish_and_check_once_each(api: str, token: str, room: str, clients: list) -> None:
    """Three room publishes through the publish API at `api`; every client (NodeClients)
    gets them once each, in order, without a connect error or a disconnect."""
    for n in range(3):
        r = requests.post(api + CONTRACT["paths"]["PUBLISH"], headers={"Authorization": f"Bearer {token}"},
                          json={"event": "news", "room": room, "data": {"n": n}}, timeout=10)
        assert r.status_code == 202, r.text
    for client in clients:
        got = client.settle("news", 3, timeout=15)
        assert [e["data"] for e in got] == [{"n": 0}, {"n": 1}, {"n": 2}], got
        assert not client.of("connect_error") and not client.of("disconnect")


def restricted_namespace(name: str) -> None:
    """A namespace where the API server enforces the restricted Pod Security profile."""
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


class PortForward:
    """`kubectl port-forward` to a Service (or, with kind="pod", a pod), in its own process
    group, killed on exit."""

    def __init__(self, namespace: str, service: str, remote_port: int, kind: str = "svc"):
        self.namespace, self.service, self.remote_port = namespace, service, remote_port
        self.target = f"{kind}/{service}"
        self.local_port = reserve_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def __enter__(self) -> PortForward:
        self.proc = subprocess.Popen(
            [tool("kubectl"), "port-forward", "-n", self.namespace, self.target,
             f"{self.local_port}:{self.remote_port}", "--address", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "kubectl port-forward exited"
            with socket.create_connection(("127.0.0.1", self.local_port), timeout=2):
                return True

        wait_for(f"port-forward to {self.target}", listening, timeout=60, interval=0.5)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            Processes.stop(self.proc, grace=10)


class ConditionWatch:
    """Every value one condition of an object takes, in order, as `kubectl get --watch` streams
    the object's writes (a poll could miss a state that lasted less than its interval).
    `seen` holds (status, reason) pairs, a new entry only when one of them changes."""

    def __init__(self, kind: str, name: str, namespace: str, condition_type: str):
        # -o json: kubectl's watch applies a jsonpath filter to the first object only.
        self.args = [tool("kubectl"), "get", kind, name, "-n", namespace, "--watch", "-o", "json"]
        self.condition_type = condition_type
        self.seen: list[tuple[str, str]] = []
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> ConditionWatch:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            chunk: list[str] = []
            for line in self.proc.stdout:
                chunk.append(line)
                if line != "}\n":  # each object is printed indented, closed at column 0
                    continue
                c = condition(json.loads("".join(chunk)), self.condition_type)
                chunk = []
                if c and (not self.seen or self.seen[-1] != (c["status"], c["reason"])):
                    self.seen.append((c["status"], c["reason"]))
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        wait_for("the watch's first state", lambda: self.seen, timeout=30, interval=0.1)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            Processes.stop(self.proc, grace=10)
        if self.reader:
            self.reader.join(timeout=10)


__all__ = ["CHART", "CONTRACT", "CRD_NAME", "EXAMPLE", "REPO", "ConditionWatch", "PortForward", "condition", "helm", "kubectl",
           "kubectl_json", "restricted_namespace", "temporary_namespace", "unreachable_reason", "wait_for"]
