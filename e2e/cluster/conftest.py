"""Fixtures of the real-cluster suite.

The cluster: the one in KUBECONFIG when it answers (kind in the hosted workflow, any
cluster of yours); otherwise this suite starts the real control plane of e2e/harness/kube.py
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from Go modules) for
the session and always stops it. Nothing here skips: no control plane is a failure.

Tests marked `pods` need pods that really run (a kubelet): .ci/test runs them in a pass of
their own with PUSHCLUSTER_E2E_NODE=real (the embedded control plane with the real node of
harness/real_node.py) and deselects them from the main pass (`-m "not pods"`), whose
embedded control plane has no node.

Environment:
  PUSH_OPERATOR_IMAGE   operator image (default ghcr.io/pushcluster/push-operator:<appVersion>)
  PUSH_SERVER_IMAGE     push-server image (default ghcr.io/pushcluster/push-server:<appVersion>)
  PUSHCLUSTER_E2E_NODE  what runs the embedded control plane's pods: "real" (a kubelet,
                        containerd, kube-proxy, CoreDNS and this run's images) or unset
                        (none)
  PUSHCLUSTER_E2E_WATCH "namespace" (default: the chart's operator watches only the test
                        namespace, safe on a shared cluster) or "all" (the chart's
                        default ClusterRole install; the kind workflow uses it)
"""

from __future__ import annotations

import os
import secrets

import pytest
import yaml

from harness.cluster import (CHART, CRD_NAME, embedded_control_plane, helm, kubectl, restricted_namespace,
                             temporary_namespace, unreachable_reason, wait_for)


def app_version() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def image_env(var: str, repository: str) -> tuple[str, str]:
    ref = os.environ.get(var) or f"{repository}:{app_version()}"
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        pytest.fail(f"{var}={ref}: expected REPOSITORY:TAG")
    return name, tag


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> dict:
    """{"embedded": bool, "kubeconfig": path}; KUBECONFIG is set for the whole session."""
    if os.environ.get("KUBECONFIG"):
        reason = unreachable_reason()
        if reason:
            pytest.fail(f"KUBECONFIG is set but its cluster cannot be used: {reason}")
        yield {"embedded": False, "kubeconfig": os.environ["KUBECONFIG"]}
        return
    node = os.environ.get("PUSHCLUSTER_E2E_NODE") or None
    what = {None: "no node", "agent": "a node agent", "real": "a real node"}.get(node, node)
    with embedded_control_plane(tmp_path_factory.mktemp("kube") / "state", node, what) as plane:
        yield {"embedded": True, "kubeconfig": str(plane.kubeconfig), "plane": plane}


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def chart_release(cluster, run_id) -> dict:
    """The chart, installed cluster-wide (ClusterRole, the chart's default) into a restricted
    namespace; the CRD comes with it unless another release already owns it. Its operator
    pods run only where pods run; the suite runs `push-operator run` on the host with this
    release's ServiceAccount and RBAC instead (e2e/harness/host_operator.py)."""
    namespace = f"pc-e2e-{run_id}-system"
    release = "pushcluster-operator"
    crd_existed = kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
    restricted_namespace(namespace)
    try:
        helm("install", release, str(CHART), "--namespace", namespace,
             "--set", f"crd.install={str(not crd_existed).lower()}")
        wait_for("the PushCluster CRD to be Established", crd_established, timeout=60, interval=0.5)
        # Established serves the resource; its OpenAPI schema (kubectl explain, strict
        # field validation on the client side) is published a moment later.
        wait_for("the PushCluster schema in the server's OpenAPI",
                 lambda: kubectl("explain", "pushcluster.spec", check=False).returncode == 0, timeout=60, interval=0.5)
        yield {"name": release, "namespace": namespace, "crd_installed": not crd_existed,
               "service_account": release}
    finally:
        try:
            helm("uninstall", release, "--namespace", namespace, "--ignore-not-found")
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
            if not crd_existed:
                # The chart keeps the CRD on uninstall (resource-policy keep); this run created it.
                kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=false", check=False)


def crd_established() -> bool:
    proc = kubectl("get", "crd", CRD_NAME, "-o",
                   "jsonpath={.status.conditions[?(@.type=='Established')].status}", check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "True"


# --- the whole user path with running pods (marker `pods`) -------------------------------

@pytest.fixture(scope="session")
def push_namespace(cluster, run_id) -> str:
    with temporary_namespace(f"pc-e2e-{run_id}") as name:
        yield name


@pytest.fixture(scope="session")
def server_image() -> str:
    repository, tag = image_env("PUSH_SERVER_IMAGE", "ghcr.io/pushcluster/push-server")
    return f"{repository}:{tag}"


@pytest.fixture(scope="session")
def operator_release(cluster, run_id, push_namespace) -> dict:
    """The chart installed with the images under test, its pods running; uninstalled afterwards."""
    namespace = f"pc-e2e-{run_id}-pods-system"
    release = "pushcluster-operator-pods"
    repository, tag = image_env("PUSH_OPERATOR_IMAGE", "ghcr.io/pushcluster/push-operator")
    crd_existed = kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
    watch_all = os.environ.get("PUSHCLUSTER_E2E_WATCH", "namespace") == "all"
    args = [
        "upgrade", "--install", release, str(CHART), "--namespace", namespace,
        "--set", f"image.repository={repository}", "--set-string", f"image.tag={tag}",
        "--set", "image.pullPolicy=IfNotPresent",
        # A CRD another release installed stays with that release.
        "--set", f"crd.install={str(not crd_existed).lower()}",
    ]
    if not watch_all:
        args += ["--set-json", f'watchNamespaces=["{push_namespace}"]']
    try:
        restricted_namespace(namespace)
        helm(*args)
        yield {"name": release, "namespace": namespace, "watch_all": watch_all, "crd_installed": not crd_existed}
    finally:
        try:
            helm("uninstall", release, "--namespace", namespace, "--wait", "--ignore-not-found")
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
            if not crd_existed:
                kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_ready(operator_release) -> dict:
    ns = operator_release["namespace"]
    deployment = wait_for(
        "the operator Deployment to have a ready replica",
        lambda: (d := yaml.safe_load(kubectl("get", "deployment", "-n", ns, "-o", "yaml",
                                             "-l", "app.kubernetes.io/name=pushcluster-operator").stdout)["items"])
        and d[0].get("status", {}).get("readyReplicas", 0) >= 1 and d[0],
        timeout=300,
    )
    return {**operator_release, "deployment": deployment}
