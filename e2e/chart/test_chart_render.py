"""The chart as the real helm binary lints and renders it, for every documented
values combination, validated against the real Kubernetes schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from harness import (
    REPO, committed_crd, crd_json_schema, crd_schema_errors, has_kubernetes_schema, manifest_schema_errors,
    validate_custom_resources,
)
from harness.chart import CHART, VALUE_COMBINATIONS, render, run_helm, template

KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]

COMBOS = sorted(VALUE_COMBINATIONS)


@pytest.mark.parametrize("combo", COMBOS)
def test_helm_lint_strict_passes(helm, combo, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps(VALUE_COMBINATIONS[combo]))
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("combo", COMBOS)
def test_rendered_objects_pass_strict_schemas(helm, combo, version, tmp_path):
    """Built-in kinds against the Kubernetes schemas (strict), the ServiceMonitor against
    its CRD's schema (more on it below); a kind neither knows fails."""
    objects = render(helm, VALUE_COMBINATIONS[combo], tmp_path, "--kube-version", version)
    assert objects, "the chart rendered nothing"
    assert manifest_schema_errors(objects, version) == []
    assert sum(has_kubernetes_schema(o, version) for o in objects) >= 6


@pytest.mark.parametrize("combo,kind,name,endpoints,endpoint_fields", [
    ("service-monitor", "ServiceMonitor", "pc-pushcluster-operator", "endpoints",
     {"port", "path", "honorLabels", "interval", "scrapeTimeout"}),
    ("pod-monitor", "PodMonitor", "pc-pushcluster-operator-push-server", "podMetricsEndpoints",
     {"port", "path", "interval", "scrapeTimeout", "relabelings"}),
])
def test_monitors_match_their_crd_schema(helm, tmp_path, combo, kind, name, endpoints, endpoint_fields):
    """ServiceMonitor and PodMonitor are Prometheus Operator CRDs, which kubernetes-validate
    skips: check them with the validator generated from those CRDs' schemas
    (npm @kubernetes-models/prometheus-operator; like the API server it does
    not reject unknown fields, so the fields are also compared below)."""
    objects = render(helm, VALUE_COMBINATIONS[combo], tmp_path)
    monitors = [o for o in objects if o["kind"] == kind]
    assert len(monitors) == 1
    proc = validate_custom_resources(monitors)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{kind}/{name} ok" in proc.stdout
    spec = monitors[0]["spec"]
    assert set(spec) == {"selector", "namespaceSelector", endpoints}
    assert set(spec[endpoints][0]) == endpoint_fields


def test_custom_resource_validator_rejects_a_bad_servicemonitor(helm, tmp_path):
    """The validator above can fail: a wrong type and a bad duration are caught."""
    objects = render(helm, VALUE_COMBINATIONS["service-monitor"], tmp_path)
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["port"] = 8080
    monitor["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    proc = validate_custom_resources([monitor])
    assert proc.returncode == 1
    assert "endpoints/0/port must be string" in proc.stdout
    assert "endpoints/0/interval must match pattern" in proc.stdout


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"replicaCont": 3}, "replicaCont"),  # top-level typo
        ({"leaderElection": {"enable": False}}, "enable"),  # nested typo
        ({"metrics": {"serviceMonitor": {"enabeld": True}}}, "enabeld"),
        ({"replicaCount": "two"}, "replicaCount"),  # wrong type
        ({"log": {"format": "xml"}}, "format"),  # not one of json/text
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),  # not a namespace name
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
    ],
    ids=["top-level-typo", "nested-typo", "servicemonitor-typo", "wrong-type", "bad-enum",
         "bad-namespace-name", "bad-duration"],
)
def test_bad_values_fail_with_a_message_naming_the_key(helm, tmp_path, values, expected):
    proc = template(helm, values, tmp_path, check=False)
    assert proc.returncode != 0, f"helm template accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert expected in proc.stderr, proc.stderr


def test_several_replicas_without_leader_election_are_refused(helm, tmp_path):
    proc = template(helm, {"replicaCount": 2, "leaderElection": {"enabled": False}}, tmp_path, check=False)
    assert proc.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled=true" in proc.stderr


def test_kubernetes_older_than_1_30_is_refused(helm, tmp_path):
    proc = template(helm, {}, tmp_path, "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr, proc.stderr


def notes(helm, *extra: str) -> str:
    proc = run_helm(helm, "install", "pc", str(CHART), "--namespace", "pushcluster-system", "--dry-run=client", *extra)
    assert "NOTES:" in proc.stdout
    return proc.stdout.split("NOTES:", 1)[1]


def inline_manifest(text: str) -> dict:
    body = text.split("<<'EOF'\n", 1)[1].split("\n  EOF", 1)[0]
    return yaml.safe_load("\n".join(line.removeprefix("  ") for line in body.splitlines()))


def test_install_notes_give_the_next_commands(helm):
    text = notes(helm)
    assert "kubectl apply -f examples/chat.yaml" in text
    assert (REPO / "examples" / "chat.yaml").is_file(), "NOTES names an example that does not exist"
    assert "kubectl apply -n default -f - <<'EOF'" in text
    assert "kubectl get pushcluster -n default -w" in text
    assert "kubectl port-forward -n default svc/chat 3000:3000" in text


def test_install_notes_in_namespaced_mode_use_a_watched_namespace(helm):
    text = notes(helm, "--set-json", 'watchNamespaces=["team-a","team-b"]')
    assert "examples/chat.yaml" not in text, "chat.yaml is in namespace default, which is not watched"
    assert "kubectl apply -n team-a -f - <<'EOF'" in text
    assert "It manages PushClusters in: team-a, team-b." in text


def test_the_manifest_in_the_notes_is_a_valid_pushcluster(helm):
    """Checked against the CRD's own schema, as the API server would."""
    manifest = inline_manifest(notes(helm))
    crd = committed_crd()
    version = next(v for v in crd["spec"]["versions"] if v["served"])
    assert manifest["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert manifest["kind"] == crd["spec"]["names"]["kind"]
    schema = crd_json_schema(crd)
    assert crd_schema_errors(manifest, schema) == []
    broken = crd_schema_errors({**manifest, "spec": {**manifest["spec"], "replicas": "two"}}, schema)
    assert any(e.startswith("spec.replicas: ") for e in broken), f"the schema check can fail: {broken}"


def test_defaults_validate_against_values_schema():
    """values.yaml itself satisfies values.schema.json (helm checks this too,
    but this names the offending key without helm)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(values)]
    assert errors == []
    assert set(values) <= set(schema["properties"]), "values.yaml has keys the schema does not list"
