"""`push-operator render` of every examples/*.yaml against real schemas.

- every rendered object passes its real schema for Kubernetes 1.30 and 1.37: built-in
  kinds `kubernetes-validate --strict`, the HTTPRoute the Gateway API CRD's own schema
  (e2e/schemas); an unknown kind fails (harness.manifest_schema_errors);
- the output holds the Deployment, both Services, the PDB, the managed-Redis
  objects and the exposure object with affinity configured;
- invalid specs exit non-zero with a message naming the field, print nothing, never panic.

The examples themselves against the CRD's own schema: test_crd_schema.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from harness import REPO, contract, manifest_schema_errors, require_binary
from harness.invalid_specs import INVALID_SPECS, manifest

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


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
            "jwt.yaml", "autoscaling.yaml", "redis-ha.yaml"} <= names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_rendered_objects_pass_strict_schemas(operator, example, version):
    """Built-in kinds against the Kubernetes schemas (strict), the HTTPRoute against the
    Gateway API CRD's schema; a kind neither knows fails."""
    objects = rendered(operator, example)
    assert objects, "render printed nothing"
    assert manifest_schema_errors(objects, version) == []


def test_strict_validation_catches_an_unknown_field():
    """The check above can fail: an unknown field is rejected."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}}
    errors = manifest_schema_errors([bad], "1.37.0")
    assert len(errors) == 1 and "Service/x invalid for 1.37.0" in errors[0], errors


def test_strict_validation_catches_a_bad_httproute_and_an_unknown_kind(operator):
    """The check above can fail for the custom resources too: a wrong type in the
    rendered HTTPRoute, and a kind no schema knows."""
    route = by_kind(rendered(operator, REPO / "examples" / "gateway.yaml"), "HTTPRoute")[0]
    route["spec"]["rules"][0]["sessionPersistence"]["type"] = 7
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    errors = manifest_schema_errors([route, unknown], "1.37.0")
    assert any(e.startswith(f"HTTPRoute/{route['metadata']['name']}: ") and "sessionPersistence" in e
               for e in errors), errors
    assert "Widget/w: no schema for example.com/v1 Widget" in errors, errors


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


@pytest.mark.parametrize("spec, field", [(spec, field) for _, spec, field in INVALID_SPECS],
                         ids=[case for case, _, _ in INVALID_SPECS])
def test_invalid_spec_is_rejected_naming_the_field(operator, spec, field):
    proc = render(operator, manifest(spec))
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr
    assert proc.stdout == "", "nothing is printed for an invalid spec"
    assert "panicked" not in proc.stderr


def test_an_example_made_invalid_is_rejected_from_a_file(operator, tmp_path):
    """A whole example, valid but for two Redis modes, read from a file (`-f PATH`)."""
    bad = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    bad["spec"]["redis"] = {"managed": {}, "external": {"url": "redis://redis.example:6379"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = render(operator, path)
    assert proc.returncode != 0
    assert "spec.redis" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "", "nothing is rendered from an invalid manifest"
    assert "panicked" not in proc.stderr
