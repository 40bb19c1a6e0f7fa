"""What the real API server alone judges: the CRD (Established, `kubectl explain` prints our
descriptions), every example accepted with strict server-side validation, every spec of the
invalid corpus refused naming the field, and `push-operator render` agreeing with the server
on every case, accept and reject alike."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import REPO, require_binary
from harness.cluster import CRD_NAME, kubectl, kubectl_json, temporary_namespace, wait_for
from harness.invalid_specs import INVALID_SPECS, manifest
from harness.node_agent import Api

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def namespace(chart_release, run_id) -> str:
    with temporary_namespace(f"pc-e2e-{run_id}-schema") as name:
        yield name


def committed_crd() -> dict:
    return yaml.safe_load((REPO / "crds" / "pushcluster.yaml").read_text())


def test_the_server_holds_the_committed_crd_established(chart_release):
    live = kubectl_json("get", "crd", CRD_NAME)
    committed = committed_crd()
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", conditions
    assert live["spec"]["names"] == {**committed["spec"]["names"], "listKind": "PushClusterList"}
    for live_version, version in zip(live["spec"]["versions"], committed["spec"]["versions"], strict=True):
        assert live_version["name"] == version["name"]
        assert live_version["subresources"] == version["subresources"]
        assert live_version["schema"] == version["schema"]
        assert live_version["additionalPrinterColumns"] == version["additionalPrinterColumns"]


def spec_property(path: str) -> dict:
    node = committed_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in path.split("."):
        node = node["properties"][key]
    return node


@pytest.mark.parametrize("field", ["spec.exposure", "spec.autoscaling", "spec.redis", "spec.history", "spec.admission",
                                   "spec.delivery"])
def test_kubectl_explain_prints_our_descriptions(chart_release, field):
    out = kubectl("explain", f"pushcluster.{field}").stdout
    described = spec_property(field)
    # explain re-wraps long text: compare the first sentence's words.
    first_words = " ".join(described["description"].split()[:8])
    assert first_words in " ".join(out.split()), out
    for child, schema in described.get("properties", {}).items():
        assert f"{child}\t" in out or f"{child} " in out, f"{field}.{child} missing from:\n{out}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_accepted_with_strict_validation(namespace, example):
    doc = yaml.safe_load(example.read_text())
    doc["metadata"]["namespace"] = namespace
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "(server dry run)" in proc.stdout


def render(spec_yaml: str) -> subprocess.CompletedProcess:
    operator = require_binary("push-operator", "PUSH_OPERATOR_BIN")
    return subprocess.run([operator, "render", "-f", "-"], input=spec_yaml, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spec, field", [(spec, field) for _, spec, field in INVALID_SPECS],
                         ids=[case for case, _, _ in INVALID_SPECS])
def test_invalid_spec_is_refused_by_the_server_and_by_render_naming_the_field(namespace, spec, field):
    doc = manifest(spec)
    server = kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
                     stdin=doc, check=False)
    client = render(doc)
    assert server.returncode != 0, f"the API server accepted it:\n{server.stdout}"
    assert field in server.stderr, server.stderr
    assert client.returncode != 0, f"render accepted what the API server refused:\n{server.stderr}"
    assert field in client.stderr, client.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_render_accepts_what_the_server_accepts(example):
    proc = render(example.read_text())
    assert proc.returncode == 0, proc.stderr


def test_a_namespace_being_deleted_refuses_new_objects_with_the_cause_the_operator_reads(chart_release, run_id):
    """The operator lets a PushCluster go without a failure when a create is refused because
    its namespace is being deleted (`ReconcileError::namespace_terminating`, which reads the
    cause below; its fast-tier mock answers with this shape)."""
    name = f"pc-e2e-{run_id}-ending"
    kubectl("create", "namespace", name)
    # A finalizer the test removes itself keeps the namespace in Terminating meanwhile.
    hold = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "hold", "namespace": name, "finalizers": ["pushcluster.dev/test-hold"]}}
    kubectl("create", "-f", "-", stdin=json.dumps(hold))
    try:
        kubectl("delete", "namespace", name, "--wait=false")
        wait_for("the namespace terminating",
                 lambda: kubectl_json("get", "namespace", name)["status"].get("phase") == "Terminating", timeout=60, interval=0.5)
        api = Api(Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]))
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-api-token"}}
        answer = api.request("POST", f"/api/v1/namespaces/{name}/secrets?fieldManager=pushcluster-operator", json=secret)
        assert answer.status_code == 403, answer.text
        body = answer.json()
        assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Forbidden", 403), body
        assert body["details"]["causes"] == [{"reason": "NamespaceTerminating", "message": f"namespace {name} is being terminated",
                                              "field": "metadata.namespace"}], body
        assert f"unable to create new content in namespace {name} because it is being terminated" in body["message"], body
    finally:
        kubectl("patch", "configmap", "hold", "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
