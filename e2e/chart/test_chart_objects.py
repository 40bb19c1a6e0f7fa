"""What the rendered chart contains: the CRD from its one source, the
operator's pod security, the contract's names, RBAC scoping, the dashboard,
and the version tie to the workspace."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib

import pytest
import yaml

from harness import REPO, find_binary
from harness.chart import CHART, CRD_FILE, RELEASE_NAMESPACE, VALUE_COMBINATIONS, one, render, run_helm

DEPLOYMENT = "pc-pushcluster-operator"


# --- CRD: one source, upgraded by helm upgrade, kept on uninstall -----------

def test_crd_file_is_a_link_to_the_committed_crd():
    linked = CHART / "files" / "pushcluster.crd.yaml"
    assert linked.is_symlink(), "the chart must not hold a second copy of the CRD"
    assert os.path.realpath(linked) == os.path.realpath(CRD_FILE)


def test_rendered_crd_is_the_committed_crd_and_is_kept_on_uninstall(helm, tmp_path):
    crd = one(render(helm, {}, tmp_path), "CustomResourceDefinition")
    committed = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == committed["spec"]
    assert crd["metadata"]["name"] == committed["metadata"]["name"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize(
    "combo, has_crd, kept",
    [("default", True, True), ("crd-not-kept", True, False), ("crd-install-off", False, False)],
)
def test_crd_values(helm, tmp_path, combo, has_crd, kept):
    crds = [o for o in render(helm, VALUE_COMBINATIONS[combo], tmp_path) if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == (1 if has_crd else 0)
    if has_crd:
        annotations = crds[0]["metadata"].get("annotations") or {}
        assert ("helm.sh/resource-policy" in annotations) == kept


def test_crd_is_a_template_not_in_helms_crds_folder():
    """Helm installs crds/ once and never upgrades it: the CRD must be a template."""
    assert not (CHART / "crds").exists()
    assert (CHART / "templates" / "crd.yaml").is_file()


def test_packaged_chart_carries_the_crd_content(helm, tmp_path):
    """`helm package` resolves the link: the published chart holds the CRD itself."""
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    archive = next(tmp_path.glob("pushcluster-operator-*.tgz"))
    with tarfile.open(archive) as tar:
        member = tar.getmember("pushcluster-operator/files/pushcluster.crd.yaml")
        assert member.isfile()
        assert tar.extractfile(member).read().decode() == CRD_FILE.read_text()


# --- operator pod: security and the contract's names -------------------------

def operator_pod(objects):
    return one(objects, "Deployment", DEPLOYMENT)["spec"]["template"]["spec"]


@pytest.mark.parametrize("combo", sorted(VALUE_COMBINATIONS))
def test_operator_pod_meets_the_restricted_pod_security_standard(helm, tmp_path, combo):
    pod = operator_pod(render(helm, VALUE_COMBINATIONS[combo], tmp_path))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v]
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert not sc.get("privileged")
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_operator_env_probes_and_ports_use_the_contract(helm, tmp_path, contract):
    objects = render(helm, VALUE_COMBINATIONS["namespaced-rbac"], tmp_path)
    container = operator_pod(objects)["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    operator_env = contract["operator::env"]
    assert set(env) <= set(operator_env.values()), f"env names not in the contract: {set(env) - set(operator_env.values())}"
    assert env[operator_env["POD_NAME"]]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env[operator_env["POD_NAMESPACE"]]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env[operator_env["WATCH_NAMESPACES"]]["value"] == "team-a,team-b"
    assert env[operator_env["LEASE_NAME"]]["value"] == contract["operator"]["LEASE_NAME"]
    assert env[operator_env["ADMIN_LISTEN"]]["value"] == contract["operator"]["ADMIN_LISTEN"]
    assert container["ports"] == [{"name": "admin", "containerPort": contract["operator"]["ADMIN_PORT"], "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == contract["paths"]["HEALTHZ"]
    assert container["startupProbe"]["httpGet"]["path"] == contract["paths"]["HEALTHZ"]
    # Readiness is "process up" too: /readyz is unready on a standby replica by
    # design, and unready new pods would stall every rollout of a 2-replica Deployment.
    assert container["readinessProbe"]["httpGet"]["path"] == contract["paths"]["HEALTHZ"]
    assert container["args"] == ["run"]


def test_leader_election_off_drops_the_lease_env_and_role(helm, tmp_path, contract):
    objects = render(helm, VALUE_COMBINATIONS["single-replica-no-leader-election"], tmp_path)
    env = {e["name"] for e in operator_pod(objects)["containers"][0]["env"]}
    assert contract["operator::env"]["LEASE_NAME"] not in env
    assert not [o for o in objects if o["kind"] == "Role"]
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"], "a PDB over one replica blocks node drains"


def test_default_is_two_replicas_with_a_disruption_budget(helm, tmp_path):
    objects = render(helm, {}, tmp_path)
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_image_defaults_to_the_app_version_and_honours_overrides(helm, tmp_path):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default = operator_pod(render(helm, {}, tmp_path))["containers"][0]["image"]
    assert default == f"ghcr.io/pushcluster/push-operator:{chart['appVersion']}"
    custom = operator_pod(render(helm, VALUE_COMBINATIONS["everything-on"], tmp_path))
    assert custom["containers"][0]["image"] == "registry.example/push-operator:dev"
    assert custom["imagePullSecrets"] == [{"name": "regcred"}]


# --- RBAC scoping (the rules themselves: test_chart_rbac.py) ------------------

def binding_subjects(objects):
    return {(o["kind"], o["metadata"].get("namespace")): o["subjects"] for o in objects if o["kind"].endswith("Binding")}


def test_cluster_wide_by_default(helm, tmp_path):
    objects = render(helm, {}, tmp_path)
    assert one(objects, "ClusterRole")["metadata"]["name"] == DEPLOYMENT
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == DEPLOYMENT
    assert [o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"] == [RELEASE_NAMESPACE]


def test_watch_namespaces_gives_a_role_per_namespace_and_nothing_cluster_wide(helm, tmp_path):
    objects = render(helm, VALUE_COMBINATIONS["namespaced-rbac"], tmp_path)
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = sorted(o["metadata"]["namespace"] for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == DEPLOYMENT)
    assert roles == ["team-a", "team-b"]
    expected_subject = [{"kind": "ServiceAccount", "name": DEPLOYMENT, "namespace": RELEASE_NAMESPACE}]
    for (kind, _), subjects in binding_subjects(objects).items():
        assert kind == "RoleBinding" and subjects == expected_subject


def test_existing_service_account_is_bound_and_not_created(helm, tmp_path):
    objects = render(helm, VALUE_COMBINATIONS["existing-service-account"], tmp_path)
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert operator_pod(objects)["serviceAccountName"] == "ops-robot"
    for subjects in binding_subjects(objects).values():
        assert subjects[0]["name"] == "ops-robot"


# --- metrics Service, ServiceMonitor, dashboard --------------------------------

def test_servicemonitor_selects_the_metrics_service(helm, tmp_path, contract):
    objects = render(helm, VALUE_COMBINATIONS["service-monitor"], tmp_path)
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"][0]["path"] == contract["paths"]["METRICS"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert service["spec"]["selector"].items() <= one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()


def test_podmonitor_scrapes_the_server_port_of_the_pods_the_operator_makes(helm, tmp_path, contract):
    """The chart's PodMonitor against a PushCluster as the operator renders it: its
    selector matches the pod labels, its port is the container port serving /metrics,
    every series gets the PushCluster's name; any namespace, or the watched ones."""
    monitor = one(render(helm, VALUE_COMBINATIONS["pod-monitor"], tmp_path), "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    binary = find_binary("push-operator", "PUSH_OPERATOR_BIN")
    if binary is None:
        pytest.skip("push-operator not built (cargo build; .ci/test does it)")
    out = subprocess.run([str(binary), "render", "-f", str(REPO / "examples" / "chat.yaml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    [deployment] = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    endpoint = spec["podMetricsEndpoints"][0]
    assert ports.get(endpoint["port"]) == contract["defaults"]["ADMIN_PORT"], ports
    assert endpoint["path"] == contract["paths"]["METRICS"]
    instance = contract["kube"]["LABEL_INSTANCE"].replace(".", "_").replace("/", "_").replace("-", "_")
    assert endpoint["relabelings"] == [{"sourceLabels": [f"__meta_kubernetes_pod_label_{instance}"],
                                        "targetLabel": "pushcluster"}]
    scoped = one(render(helm, {"metrics": {"podMonitor": {"enabled": True}}, "watchNamespaces": ["team-a"]},
                        tmp_path), "PodMonitor")
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_no_servicemonitor_podmonitor_or_dashboard_by_default(helm, tmp_path):
    kinds = {o["kind"] for o in render(helm, {}, tmp_path)}
    assert not {"ServiceMonitor", "PodMonitor", "ConfigMap"} & kinds


def dashboard_metric_names(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = set()
    for expr in exprs:
        for name in re.findall(r"\b(push_[a-z_]+)", expr):
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def test_dashboard_charts_exactly_the_contract_metrics(helm, tmp_path, contract):
    objects = render(helm, VALUE_COMBINATIONS["dashboard"], tmp_path)
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["pushcluster.json"])
    metric_names = {v for k, v in contract["metrics"].items() if isinstance(v, str) and v.startswith("push_")}
    assert dashboard_metric_names(dashboard) == metric_names
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert contract["metrics"]["TRANSPORT"] in json.dumps(dashboard)


# --- one version -----------------------------------------------------------------

def workspace_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def test_chart_version_and_app_version_are_the_workspace_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == workspace_version(), "run charts/sync-version.sh"
    assert chart["appVersion"] == workspace_version(), "run charts/sync-version.sh"


def test_sync_version_script_bumps_workspace_and_chart(tmp_path):
    """Runs the script on a copy of the files it edits."""
    (tmp_path / "charts").mkdir()
    shutil.copy(REPO / "Cargo.toml", tmp_path / "Cargo.toml")
    shutil.copy(REPO / "charts" / "sync-version.sh", tmp_path / "charts" / "sync-version.sh")
    shutil.copytree(CHART, tmp_path / "charts" / "pushcluster-operator", symlinks=True)
    script = tmp_path / "charts" / "sync-version.sh"

    bad = subprocess.run([script, "1.2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a semantic version" in bad.stderr

    subprocess.run([script, "1.2.3-rc.1"], check=True, capture_output=True)
    cargo = tomllib.loads((tmp_path / "Cargo.toml").read_text())
    chart = yaml.safe_load((tmp_path / "charts" / "pushcluster-operator" / "Chart.yaml").read_text())
    assert cargo["workspace"]["package"]["version"] == "1.2.3-rc.1"
    assert chart["version"] == "1.2.3-rc.1" and chart["appVersion"] == "1.2.3-rc.1"
    # Only the workspace version line changed in Cargo.toml.
    before = (REPO / "Cargo.toml").read_text().splitlines()
    after = (tmp_path / "Cargo.toml").read_text().splitlines()
    assert [(a, b) for a, b in zip(before, after) if a != b] == [
        (f'version = "{workspace_version()}"', 'version = "1.2.3-rc.1"')
    ]


# --- the binary reads what the chart sets ---------------------------------------

def test_push_operator_run_reads_every_env_the_chart_sets(helm, tmp_path, contract):
    binary = find_binary("push-operator", "PUSH_OPERATOR_BIN")
    if binary is None:
        pytest.fail("push-operator binary not found: cargo build -p push-operator (or set PUSH_OPERATOR_BIN)")
    container = operator_pod(render(helm, {}, tmp_path))["containers"][0]
    proc = subprocess.run([binary, *container["args"], "--help"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "unrecognized subcommand" in proc.stderr:
        pytest.skip(f"{binary} has no `run` subcommand yet (issue 3)")
    assert proc.returncode == 0, proc.stderr
    # Logging is set up before argument parsing, from the env alone (operator telemetry).
    logging = {contract["operator::env"]["LOG"], contract["operator::env"]["LOG_FORMAT"]}
    flags = {e["name"] for e in container["env"]} - logging
    assert sorted(f for f in flags if f"[env: {f}=" not in proc.stdout) == [], proc.stdout
