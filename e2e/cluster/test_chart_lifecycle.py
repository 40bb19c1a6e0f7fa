"""The chart on the real API server: install (CRD, ServiceAccount, least-privilege RBAC, the
operator's own pods admitted under the restricted Pod Security profile), `helm upgrade` with
a changed value and with a changed CRD (a new optional field appears on the server), and
`helm uninstall` keeping the CRD and every PushCluster (a new install adopts the CRD)."""

from __future__ import annotations

import shutil

import pytest
import yaml
from harness.cluster import CHART, CONTRACT, CRD_NAME, helm, kubectl, kubectl_json, wait_for

PROBE_FIELD = "e2eUpgradeProbe"


def release_objects(release: dict, kind: str) -> list[dict]:
    return kubectl_json("get", kind, "-n", release["namespace"], "-l",
                        f"app.kubernetes.io/instance={release['name']}")["items"]


def test_install_creates_the_service_account_rbac_and_admitted_pods(chart_release):
    ns = chart_release["namespace"]
    sa = kubectl_json("get", "serviceaccount", chart_release["service_account"], "-n", ns)
    assert sa["metadata"]["name"] == chart_release["service_account"]
    binding = kubectl_json("get", "clusterrolebinding", chart_release["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": chart_release["service_account"], "namespace": ns}]
    assert binding["roleRef"]["kind"] == "ClusterRole"
    # Leader election is namespaced: a Role in the release namespace, not cluster-wide.
    roles = release_objects(chart_release, "roles")
    assert any("leases" in rule.get("resources", []) for role in roles for rule in role["rules"]), roles
    deployment = release_objects(chart_release, "deployments")[0]
    replicas = deployment["spec"]["replicas"]
    wait_for(f"{replicas} operator pods created under the restricted profile",
             lambda: len(release_objects(chart_release, "pods")) == replicas, timeout=60, interval=0.5)
    rejected = [e["message"] for e in kubectl_json("get", "events", "-n", ns)["items"] if e["reason"] == "FailedCreate"]
    assert rejected == [], rejected
    if chart_release["crd_installed"]:
        crd = kubectl_json("get", "crd", CRD_NAME)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_upgrade_with_a_changed_value_reaches_the_deployment(chart_release):
    ns = chart_release["namespace"]
    helm("upgrade", chart_release["name"], str(CHART), "--namespace", ns, "--reuse-values", "--set", "log.level=debug")
    env = release_objects(chart_release, "deployments")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": CONTRACT["operator::env"]["LOG"], "value": "debug"} in env


def crd_spec_properties() -> dict:
    crd = kubectl_json("get", "crd", CRD_NAME)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_upgrade_with_a_changed_crd_brings_the_new_field(chart_release, tmp_path):
    if not chart_release["crd_installed"]:
        pytest.fail("the CRD belongs to another release on this cluster: run against a cluster without it")
    ns = chart_release["namespace"]
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=False)
    crd_file = chart / "files" / "pushcluster.crd.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"][PROBE_FIELD] = {"type": "string", "description": "A field only the e2e upgrade adds."}
    crd_file.write_text(yaml.safe_dump(crd))
    assert PROBE_FIELD not in crd_spec_properties()
    helm("upgrade", chart_release["name"], str(chart), "--namespace", ns, "--reuse-values")
    wait_for("the new field on the server's CRD", lambda: PROBE_FIELD in crd_spec_properties(), timeout=30, interval=0.5)
    # The OpenAPI document that `kubectl explain` reads is republished asynchronously.
    wait_for("kubectl explain to describe the new field",
             lambda: "A field only the e2e upgrade adds." in
             kubectl("explain", f"pushcluster.spec.{PROBE_FIELD}", check=False).stdout, timeout=60, interval=1)
    helm("upgrade", chart_release["name"], str(CHART), "--namespace", ns, "--reuse-values")
    wait_for("the field to go again", lambda: PROBE_FIELD not in crd_spec_properties(), timeout=30, interval=0.5)


def test_uninstall_keeps_the_crd_and_the_clusters_and_a_reinstall_adopts_it(chart_release, run_id):
    if not chart_release["crd_installed"]:
        pytest.fail("the CRD belongs to another release on this cluster: run against a cluster without it")
    ns = chart_release["namespace"]
    kept = {"apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
            "metadata": {"name": "kept", "namespace": ns}, "spec": {"replicas": 0}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(kept))
    try:
        helm("uninstall", chart_release["name"], "--namespace", ns)
        assert kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, "helm uninstall deleted the CRD"
        assert kubectl("get", "pushcluster", "kept", "-n", ns, check=False).returncode == 0
        assert kubectl("get", "clusterrole", chart_release["name"], check=False).returncode != 0
        helm("install", chart_release["name"], str(CHART), "--namespace", ns)
        crd = kubectl_json("get", "crd", CRD_NAME)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == chart_release["name"]
    finally:
        kubectl("delete", "pushcluster", "kept", "-n", ns, "--ignore-not-found", "--wait=false", check=False)
