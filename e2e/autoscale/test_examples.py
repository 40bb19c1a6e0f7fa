"""examples/autoscaling: every manifest is valid against its real schema (Kubernetes
schemas for the HPA, the operator's own CRD for PushClusters, KEDA's and the
Prometheus Operator's CRDs for the rest), and the pieces fit together: the
external scalers target the PushCluster that has operator autoscaling off, on the
metric name and labels the contract defines."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from harness import (
    REPO, contract, crd_json_schema, crd_schema_errors, kubernetes_schema_errors, operator_crd, require_binary,
    validate_custom_resources,
)

EXAMPLES = REPO / "examples" / "autoscaling"
K8S_VERSION = "1.35"
C = contract()


def load(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    """The schema of the CRD `push-operator crd` prints."""
    return crd_json_schema(operator_crd())


def test_hpa_is_valid_for_kubernetes_and_the_check_can_fail():
    hpa = load("hpa.yaml")
    assert kubernetes_schema_errors(hpa, K8S_VERSION) is None
    broken = copy.deepcopy(hpa)
    broken["spec"]["metrics"][0]["pods"]["target"]["averagevalue"] = "1"
    error = kubernetes_schema_errors(broken, K8S_VERSION)
    assert error is not None and "averagevalue" in error, error


def test_keda_and_podmonitor_are_valid_for_their_crds():
    objects = [load("keda-scaledobject.yaml"), load("podmonitor.yaml")]
    result = validate_custom_resources(objects)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = copy.deepcopy(objects[0])
    del broken["spec"]["triggers"]
    result = validate_custom_resources([broken])
    assert result.returncode == 1 and "triggers" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["pushcluster-operator-autoscaling.yaml", "pushcluster-external-scaler.yaml"])
def test_pushclusters_are_valid_for_the_operators_crd(crd_schema, name):
    assert crd_schema_errors(load(name), crd_schema) == []
    broken = load(name)
    broken["spec"]["autoscaling"]["maxScaleInStep"] = "one"
    errors = crd_schema_errors(broken, crd_schema)
    assert any(e.startswith("spec.autoscaling.maxScaleInStep: ") for e in errors), errors


def test_operator_autoscaling_example_is_enabled_within_bounds():
    spec = load("pushcluster-operator-autoscaling.yaml")["spec"]
    scaling = spec["autoscaling"]
    assert scaling["enabled"] is True
    assert scaling["minReplicas"] <= spec["replicas"] <= scaling["maxReplicas"]


def test_external_scalers_target_the_cluster_with_operator_autoscaling_off():
    cluster = load("pushcluster-external-scaler.yaml")
    assert cluster["spec"]["autoscaling"]["enabled"] is False
    api_version = f"{C['kube']['GROUP']}/{C['kube']['VERSION']}"
    for scaler in (load("hpa.yaml"), load("keda-scaledobject.yaml")):
        ref = scaler["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
            api_version, C["kube"]["KIND"], cluster["metadata"]["name"]), scaler["kind"]
        assert scaler["metadata"]["namespace"] == cluster["metadata"]["namespace"], scaler["kind"]


def test_scalers_read_the_contract_metric_from_the_push_server_pods():
    metric = C["metrics"]["CONNECTIONS"]
    assert load("hpa.yaml")["spec"]["metrics"][0]["pods"]["metric"]["name"] == metric
    adapter = load("prometheus-adapter-values.yaml")["rules"]["custom"][0]
    assert adapter["seriesQuery"].startswith(metric + "{") and adapter["name"]["as"] == metric

    monitor = load("podmonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        C["kube"]["LABEL_NAME"]: C["kube"]["APP_NAME"],
        C["kube"]["LABEL_COMPONENT"]: C["kube"]["COMPONENT_SERVER"],
    }
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["path"] == C["paths"]["METRICS"]
    # The KEDA query selects the cluster by the label the PodMonitor relabels onto every series.
    relabel = endpoint["relabelings"][0]
    instance = C["kube"]["LABEL_INSTANCE"].replace(".", "_").replace("/", "_").replace("-", "_")
    assert relabel["sourceLabels"] == [f"__meta_kubernetes_pod_label_{instance}"]
    query = load("keda-scaledobject.yaml")["spec"]["triggers"][0]["metadata"]["query"]
    assert f'{metric}{{' in query and f'{relabel["targetLabel"]}="chat"' in query


def test_podmonitor_selects_the_rendered_pods_and_their_metrics_port():
    """`push-operator render` of the external-scaler PushCluster: the PodMonitor's
    selector matches the Deployment's pod labels and its port name is the container
    port serving /metrics (the admin port)."""
    binary = require_binary("push-operator", "PUSH_OPERATOR_BIN")
    out = subprocess.run([str(binary), "render", "-f", str(EXAMPLES / "pushcluster-external-scaler.yaml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    deployments = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    assert len(deployments) == 1
    template = deployments[0]["spec"]["template"]
    monitor = load("podmonitor.yaml")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert ports.get(monitor["podMetricsEndpoints"][0]["port"]) == C["defaults"]["ADMIN_PORT"], ports
