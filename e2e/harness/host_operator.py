"""`push-operator run` as a host process that authenticates as a chart release's
ServiceAccount (a TokenRequest token in a kubeconfig of its own), so it has exactly the
chart's RBAC; the env is the one the chart's Deployment sets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import requests

from .cluster import CONTRACT, kubectl
from .core import require_binary, wait_until
from .ports import reserve_port
from .procs import Processes
from .push_server import parse_metrics

OPERATOR_ENV = CONTRACT["operator::env"]
# What the API server answers when RBAC forbids a call (403) or an object is invalid (422),
# as kube-rs prints it in an error.
API_REFUSAL = re.compile(r"code: (403|422)\b|\"code\":(403|422)\b|\bForbidden\b|\bforbidden:|Unprocessable")


def service_account_kubeconfig(path: Path, namespace: str, service_account: str) -> Path:
    """A kubeconfig for the cluster of the current one, user = a fresh token of the SA."""
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()
    current = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = current["clusters"][0]["cluster"]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": service_account,
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": service_account, "context": {"cluster": "cluster", "user": service_account}}],
    }))
    path.chmod(0o600)
    return path


class HostOperator:
    def __init__(self, procs: Processes, kubeconfig: Path, identity: str, release_namespace: str,
                 lease_name: str | None = CONTRACT["operator"]["LEASE_NAME"], watch_namespaces: str = ""):
        self.procs, self.identity = procs, identity
        self.admin_port = reserve_port()
        self.env = {
            "KUBECONFIG": str(kubeconfig),
            OPERATOR_ENV["POD_NAME"]: identity,
            OPERATOR_ENV["POD_NAMESPACE"]: release_namespace,
            OPERATOR_ENV["WATCH_NAMESPACES"]: watch_namespaces,
            OPERATOR_ENV["ADMIN_LISTEN"]: f"127.0.0.1:{self.admin_port}",
            OPERATOR_ENV["LOG"]: "info,push_operator=debug,kube=info",
            OPERATOR_ENV["LOG_FORMAT"]: "text",
        }
        if lease_name:
            self.env[OPERATOR_ENV["LEASE_NAME"]] = lease_name
        self.proc: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> HostOperator:
        binary = require_binary("push-operator", "PUSH_OPERATOR_BIN")
        self.proc = self.procs.start([binary, "run"], name=f"operator-{self.identity}", env=self.env)
        wait_until(lambda: self.get("HEALTHZ").status_code == 200, 30, f"operator {self.identity} /healthz",
                   process=self.proc)
        return self

    def get(self, path_key: str) -> requests.Response:
        return requests.get(self.admin_url + CONTRACT["paths"][path_key], timeout=5)

    def ready(self) -> bool:
        try:
            return self.get("READYZ").status_code == 200
        except requests.RequestException:
            return False

    def reconcile_runs(self) -> float:
        return sum(v for n, _, v in parse_metrics(self.get("METRICS").text)
                   if n == "pushcluster_operator_reconcile_runs_total")

    def reconcile_failures(self) -> dict[str, float]:
        return {labels.get("step", ""): v for n, labels, v in parse_metrics(self.get("METRICS").text)
                if n == "pushcluster_operator_reconcile_failures_total" and v}

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace") if self.proc else ""

    def api_refusals(self) -> list[str]:
        """Log lines where the API server refused a call (403 or 422)."""
        return [line for line in self.log().splitlines() if API_REFUSAL.search(line)]

    def kill(self) -> None:
        assert self.proc is not None
        Processes.signal(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        Processes.signal(self.proc, signal.SIGTERM)
        return self.proc.wait(timeout=30)
