"""Every object the operator would create for each example (`push-operator
render -f`), validated against the real Kubernetes 1.30 and 1.37 schemas
(strict), and HTTPRoutes against the Gateway API CRD's own schema."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from chartlib import REPO, find_binary, kubernetes_schema_errors, validate_custom_resources

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Kinds outside the Kubernetes schemas, validated by validate_custom_resources.mjs.
CUSTOM_KINDS = {("gateway.networking.k8s.io/v1", "HTTPRoute")}


@pytest.fixture(scope="module")
def operator_bin():
    binary = find_binary("push-operator", "PUSH_OPERATOR_BIN")
    if binary is None:
        pytest.fail("push-operator binary not found: cargo build -p push-operator (or set PUSH_OPERATOR_BIN)")
    probe = subprocess.run([binary, "render", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 and "unrecognized subcommand" in probe.stderr:
        pytest.skip(f"{binary} has no `render` subcommand yet (issue 3)")
    return binary


def rendered(operator_bin, example) -> list[dict]:
    proc = subprocess.run([operator_bin, "render", "-f", str(example)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"render -f {example.name} failed: {proc.stderr}"
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    assert objects, f"render -f {example.name} printed nothing"
    return objects


def test_there_are_examples():
    assert EXAMPLES, "examples/*.yaml is empty"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_render_output_passes_strict_kubernetes_schemas(operator_bin, example, version):
    objects = rendered(operator_bin, example)
    errors = [kubernetes_schema_errors(o, version) for o in objects if (o["apiVersion"], o["kind"]) not in CUSTOM_KINDS]
    assert [e for e in errors if e] == []
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS]
    if custom:
        proc = validate_custom_resources(custom)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_rejects_an_invalid_manifest_naming_the_field(operator_bin, tmp_path):
    bad = yaml.safe_load(EXAMPLES[0].read_text())
    bad["spec"]["redis"] = {"managed": {}, "external": {"url": "redis://redis.example:6379"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run([operator_bin, "render", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "spec.redis" in proc.stderr
    assert proc.stdout.strip() == "", "nothing is rendered from an invalid manifest"
    assert "panicked" not in proc.stderr
