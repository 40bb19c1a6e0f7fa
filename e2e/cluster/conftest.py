"""Fixtures of the real-cluster suite. Everything runs against the cluster in
KUBECONFIG and is skipped, with the reason, when none answers.

Environment:
  PUSH_OPERATOR_IMAGE   operator image (default ghcr.io/pushcluster/push-operator:<appVersion>)
  PUSH_SERVER_IMAGE     push-server image (default ghcr.io/pushcluster/push-server:<appVersion>)
  PUSHCLUSTER_E2E_WATCH "namespace" (default: the operator watches only the test
                        namespace, safe on a shared cluster) or "all" (the chart's
                        default ClusterRole install; the kind workflow uses it)
  PUSHCLUSTER_E2E_REQUIRE_CLUSTER=1  fail instead of skipping when no cluster answers
                        (the kind workflow sets it, so a broken cluster cannot pass)
"""

from __future__ import annotations

import os
import secrets

import pytest
import yaml

from clusterlib import CHART, helm, kubectl, unreachable_reason, wait_for

CRD_NAME = "pushclusters.pushcluster.dev"


def app_version() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def image_env(var: str, repository: str) -> tuple[str, str]:
    ref = os.environ.get(var) or f"{repository}:{app_version()}"
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        pytest.fail(f"{var}={ref}: expected REPOSITORY:TAG")
    return name, tag


@pytest.fixture(scope="session")
def cluster() -> None:
    reason = unreachable_reason()
    if reason and os.environ.get("PUSHCLUSTER_E2E_REQUIRE_CLUSTER") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def push_namespace(cluster, run_id) -> str:
    name = f"pc-e2e-{run_id}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def server_image() -> str:
    repository, tag = image_env("PUSH_SERVER_IMAGE", "ghcr.io/pushcluster/push-server")
    return f"{repository}:{tag}"


@pytest.fixture(scope="session")
def operator_release(cluster, run_id, push_namespace) -> dict:
    """The chart installed with the images under test; uninstalled afterwards."""
    namespace = f"pc-e2e-{run_id}-system"
    release = "pushcluster-operator"
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
        # The restricted Pod Security Standard, enforced by the API server: the
        # operator's pods must be admitted under it.
        kubectl("create", "namespace", namespace)
        kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/enforce-version=latest")
        helm(*args)
        yield {"name": release, "namespace": namespace, "watch_all": watch_all, "crd_installed": not crd_existed}
    finally:
        try:
            helm("uninstall", release, "--namespace", namespace, "--wait", "--ignore-not-found")
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
            if not crd_existed:
                # The chart keeps the CRD on uninstall (resource-policy keep); this run created it.
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
