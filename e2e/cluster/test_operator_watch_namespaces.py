"""The chart's watch-namespaces mode on the real API server: Roles in the listed namespaces
and nothing cluster-wide but the CRD; `push-operator run` with that ServiceAccount
reconciles the allowed namespace, leaves another alone, and is never refused (403)."""

from __future__ import annotations

import pytest
import yaml
from harness import Processes
from harness.cluster import CHART, EXAMPLE, helm, kubectl, kubectl_json, wait_for
from harness.host_operator import HostOperator, service_account_kubeconfig


@pytest.fixture(scope="module")
def scoped(chart_release, run_id, tmp_path_factory) -> dict:
    allowed, other = f"pc-e2e-{run_id}-allowed", f"pc-e2e-{run_id}-other"
    system, release = f"pc-e2e-{run_id}-scoped-system", "pushcluster-operator-scoped"
    for ns in (allowed, other, system):
        kubectl("create", "namespace", ns)
    workdir = tmp_path_factory.mktemp("scoped")
    procs = Processes(workdir)
    try:
        helm("install", release, str(CHART), "--namespace", system, "--set", "crd.install=false",
             "--set-json", f'watchNamespaces=["{allowed}"]')
        kubeconfig = service_account_kubeconfig(workdir / "sa.kubeconfig", system, release)
        op = HostOperator(procs, kubeconfig, "scoped-operator", system, watch_namespaces=allowed).start()
        wait_for("the scoped operator to lead", op.ready, timeout=60, interval=0.2)
        yield {"allowed": allowed, "other": other, "system": system, "release": release, "operator": op}
    finally:
        procs.kill_all()
        helm("uninstall", release, "--namespace", system, "--ignore-not-found")
        for ns in (allowed, other, system):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_scoped_rbac_is_roles_only(scoped):
    assert kubectl("get", "clusterrole", scoped["release"], check=False).returncode != 0
    role = kubectl_json("get", "role", scoped["release"], "-n", scoped["allowed"])
    assert role["rules"]
    assert kubectl("get", "role", scoped["release"], "-n", scoped["other"], check=False).returncode != 0


def apply_chat(namespace: str) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = namespace
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))


def test_the_allowed_namespace_is_reconciled_and_the_other_ignored(scoped):
    apply_chat(scoped["other"])
    apply_chat(scoped["allowed"])
    wait_for("the Deployment in the allowed namespace",
             lambda: kubectl("get", "deployment", "chat", "-n", scoped["allowed"], check=False).returncode == 0,
             timeout=60, interval=0.3)
    wait_for("the allowed PushCluster's status",
             lambda: kubectl_json("get", "pushcluster", "chat", "-n", scoped["allowed"]).get("status", {})
             .get("observedGeneration") == 1, timeout=60, interval=0.3)
    # Applied first, so ignored by now if it is ignored at all.
    other = kubectl_json("get", "pushcluster", "chat", "-n", scoped["other"])
    assert not other.get("status", {}).get("observedGeneration"), other.get("status")
    assert kubectl("get", "deployment", "chat", "-n", scoped["other"], check=False).returncode != 0
    refusals = scoped["operator"].api_refusals()
    assert refusals == [], "\n".join(refusals[:20])
    for ns in (scoped["allowed"], scoped["other"]):
        kubectl("delete", "pushcluster", "chat", "-n", ns, "--wait=true", "--timeout=60s")
