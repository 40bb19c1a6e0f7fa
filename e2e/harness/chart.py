"""Helpers of the chart and manifest checks: the real helm binary, chart rendering
for each documented values combination. The contract, binary lookup and schema checks
are the rest of the harness (e2e/contract.json, rendered from the Rust contract crate;
harness/schemas.py); the `helm` and `contract` fixtures are e2e/chart/conftest.py's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .core import REPO
from .schemas import COMMITTED_CRD

CHART = REPO / "charts" / "pushcluster-operator"
CRD_FILE = COMMITTED_CRD
RELEASE = "pc"
RELEASE_NAMESPACE = "pushcluster-system"

# Every values combination the chart documents (values.yaml comments, README).
VALUE_COMBINATIONS: dict[str, dict] = {
    "default": {},
    "namespaced-rbac": {"watchNamespaces": ["team-a", "team-b"]},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "pod-monitor": {"metrics": {"podMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "prometheus-rule": {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}},
    "dashboard": {"dashboard": {"enabled": True, "namespace": "monitoring"}},
    "crd-install-off": {"crd": {"install": False}},
    "crd-not-kept": {"crd": {"keep": False}},
    "single-replica-no-leader-election": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ops-robot"}},
    "everything-on": {
        "watchNamespaces": ["team-a"],
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
        "dashboard": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "image": {"repository": "registry.example/push-operator", "tag": "dev", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"example.com/team": "push"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
    },
}


def find_helm() -> str:
    """The real helm that .ci/setup installs into .tools/bin (or one on PATH)."""
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if not found:
        pytest.fail("helm not found: run .ci/setup (installs it into .tools/bin)")
    return found


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def template(helm: str, values: dict, tmp_path: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
        "-f", str(values_file), *extra, check=check,
    )


def render(helm: str, values: dict, tmp_path: Path, *extra: str) -> list[dict]:
    """The chart's objects for these values, as `helm install` would send them."""
    out = template(helm, values, tmp_path, *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]

