"""`push-operator render` of every examples/*.yaml against real schemas.

- every rendered object passes `kubernetes-validate --strict` for Kubernetes
  1.30 and 1.37, except the HTTPRoute: kubernetes-validate only knows built-in
  kinds and the Gateway API CRD schema is not available offline, so the
  HTTPRoute's sticky-session fields are asserted structurally instead;
- every example validates against the CRD's own openAPIV3Schema (crds/pushcluster.yaml);
- the output holds the Deployment, both Services, the PDB, the managed-Redis
  objects and the exposure object with affinity configured;
- invalid specs exit non-zero with a message naming the field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import REPO, contract, require_binary  # noqa: E402

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {("gateway.networking.k8s.io/v1", "HTTPRoute")}


@pytest.fixture(scope="module")
def operator() -> Path:
    return require_binary("push-operator", "PUSH_OPERATOR_BIN")


def render(operator: Path, manifest: Path | str, *args: str) -> subprocess.CompletedProcess:
    if isinstance(manifest, Path):
        return subprocess.run([operator, "render", "-f", manifest, *args], capture_output=True, text=True, timeout=60)
    return subprocess.run([operator, "render", "-f", "-", *args], input=manifest, capture_output=True,
                          text=True, timeout=60)


def rendered(operator: Path, example: Path) -> list[dict]:
    proc = render(operator, example)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"chat.yaml", "ingress-nginx.yaml", "traefik.yaml", "gateway.yaml", "external-redis.yaml",
            "jwt.yaml", "autoscaling.yaml"} <= names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_rendered_objects_pass_kubernetes_validate_strict(operator, example, version):
    import kubernetes_validate

    objects = rendered(operator, example)
    assert objects, "render printed nothing"
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{example.name}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {path}: {err.message}")


def test_strict_validation_catches_an_unknown_field():
    """The check above can fail: an unknown field is rejected."""
    import kubernetes_validate

    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.37.0", strict=True)


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    crd = yaml.safe_load((REPO / "crds" / "pushcluster.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def openapi_to_jsonschema(node):
    """openAPIV3Schema → JSON Schema: drop the Kubernetes extensions, map `nullable`."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(example, crd_schema):
    doc = yaml.safe_load(example.read_text())
    jsonschema.validate(doc, openapi_to_jsonschema(crd_schema))


def test_crd_schema_rejects_an_unknown_field_and_a_bad_type(crd_schema):
    schema = openapi_to_jsonschema(crd_schema)
    schema_strict = dict(schema)
    base = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    bad_type = {**base, "spec": {**base["spec"], "replicas": "three"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_type, schema_strict)
    too_many = {**base, "spec": {**base["spec"], "replicas": 5000}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(too_many, schema_strict)


def test_managed_redis_example_has_every_object(operator):
    objects = rendered(operator, REPO / "examples" / "chat.yaml")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "chat"), ("Service", "chat"), ("Service", "chat-headless"),
            ("PodDisruptionBudget", "chat"), ("StatefulSet", "chat-redis"), ("Service", "chat-redis"),
            ("NetworkPolicy", "chat-redis"), ("Secret", "chat-redis-password"),
            ("Secret", "chat-api-token")} <= names
    client = next(o for o in by_kind(objects, "Service") if o["metadata"]["name"] == "chat")
    assert client["spec"]["sessionAffinity"] == "ClientIP"
    labels = contract()["kube"]
    for obj in objects:
        assert obj["metadata"]["labels"][labels["LABEL_MANAGED_BY"]] == labels["MANAGED_BY"], obj["kind"]


def test_external_redis_example_has_no_redis_objects(operator):
    objects = rendered(operator, REPO / "examples" / "external-redis.yaml")
    assert not by_kind(objects, "StatefulSet") and not by_kind(objects, "NetworkPolicy")
    env = {e["name"]: e for e in by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    names = contract()["env"]
    assert env[names["REDIS_PASSWORD"]]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-credentials", "key": "password", "optional": False}
    assert env[names["REDIS_URL"]]["value"].endswith("protocol=resp3")


@pytest.mark.parametrize("example, kind, pointer, expected", [
    ("ingress-nginx.yaml", "Ingress", ("metadata", "annotations", "nginx.ingress.kubernetes.io/affinity"), "cookie"),
    ("ingress-nginx.yaml", "Ingress", ("metadata", "annotations", "nginx.ingress.kubernetes.io/affinity-mode"), "persistent"),
    ("ingress-nginx.yaml", "Ingress", ("metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-read-timeout"), "3600"),
    ("autoscaling.yaml", "Ingress", ("metadata", "annotations", "nginx.ingress.kubernetes.io/upstream-hash-by"), "$binary_remote_addr"),
    ("traefik.yaml", "Service", ("metadata", "annotations", "traefik.ingress.kubernetes.io/service.sticky.cookie"), "true"),
    ("gateway.yaml", "HTTPRoute", ("spec", "rules", 0, "sessionPersistence", "type"), "Cookie"),
    ("gateway.yaml", "HTTPRoute", ("spec", "rules", 0, "sessionPersistence", "sessionName"), "feed-session"),
    ("gateway.yaml", "HTTPRoute", ("spec", "parentRefs", 0, "name"), "public"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_exposure_object_has_affinity(operator, example, kind, pointer, expected):
    objects = by_kind(rendered(operator, REPO / "examples" / example), kind)
    matching = []
    for obj in objects:
        node = obj
        try:
            for key in pointer:
                node = node[key]
        except (KeyError, IndexError, TypeError):
            continue
        matching.append(node)
    assert expected in matching, f"{example}: {kind} {'/'.join(map(str, pointer))} = {matching}"


HEAD = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: bad}\n"


@pytest.mark.parametrize("spec, field", [
    ("spec: {redis: {managed: {}, external: {url: 'redis://r'}}}", "spec.redis"),
    ("spec: {exposure: {ingress: {className: nginx}}}", "spec.exposure.host"),
    ("spec: {replicas: 1, autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 2}}", "spec.autoscaling.minReplicas"),
    ("spec: {exposure: {host: a.b, ingress: {className: t, controller: traefik, affinity: ipHash}}}", "spec.exposure.ingress.affinity"),
    ("spec: {replicas: lots}", "spec.replicas"),
    ("spec: {env: [{name: PUSH_API_TOKEN, value: x}]}", "spec.env[0].name"),
    ("spec: {replica: 3}", "spec.replica"),
    ("spec: {replicas: 5000}", "spec.replicas"),
], ids=["two-redis-modes", "ingress-without-host", "min-above-max", "traefik-ip-hash", "wrong-type", "reserved-env",
        "misspelt-field", "above-maximum"])
def test_invalid_spec_is_rejected_naming_the_field(operator, spec, field):
    proc = render(operator, HEAD + spec)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr
    assert proc.stdout == "", "nothing is printed for an invalid spec"
