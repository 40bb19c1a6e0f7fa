"""Schema checks shared by the suites: real Kubernetes schemas (kubernetes-validate
--strict), custom resources against their own projects' CRDs (e2e/schemas, npm
@kubernetes-models), and PushClusters against the operator's own CRD schema."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .core import REPO, require_binary

SCHEMAS_DIR = REPO / "e2e" / "schemas"
CUSTOM_RESOURCE_VALIDATOR = SCHEMAS_DIR / "validate_custom_resources.mjs"
COMMITTED_CRD = REPO / "crds" / "pushcluster.yaml"


def _name(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


# --- built-in kinds: the real Kubernetes schemas --------------------------------

def kubernetes_schema_errors(obj: dict, version: str) -> str | None:
    """kubernetes-validate --strict for one object; an unknown kind is an error too."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        return f"{_name(obj)} invalid for {version}: {path}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError:
        return f"no Kubernetes {version} schema for {obj.get('apiVersion')} {obj.get('kind')}: unknown kind or version"
    return None


def has_kubernetes_schema(obj: dict, version: str) -> bool:
    """Whether kubernetes-validate knows this kind (built-in) for `version`."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        pass
    return True


# --- custom resources: their own CRDs' schemas (npm, e2e/schemas) ---------------

def validate_custom_resources(objects: list[dict]) -> subprocess.CompletedProcess:
    """e2e/schemas/validate_custom_resources.mjs on `objects`: HTTPRoute, ServiceMonitor,
    PodMonitor and ScaledObject against their CRDs' schemas. stdout has one line per
    object ("<Kind>/<name> ok" or its errors); exit code 1 on any error or unknown kind."""
    if not (SCHEMAS_DIR / "node_modules").is_dir():
        pytest.fail(f"{SCHEMAS_DIR}/node_modules is missing: run .ci/setup (npm ci in e2e/schemas)")
    return subprocess.run(["node", str(CUSTOM_RESOURCE_VALIDATOR)], input=json.dumps(objects),
                          capture_output=True, text=True, timeout=60, cwd=SCHEMAS_DIR)


def manifest_schema_errors(objects: list[dict], version: str) -> list[str]:
    """Every object against its real schema: built-in kinds with kubernetes-validate
    --strict for `version`, every other kind with the CRD validator above. A kind
    neither knows is an error."""
    errors, custom = [], []
    for obj in objects:
        if has_kubernetes_schema(obj, version):
            error = kubernetes_schema_errors(obj, version)
            errors += [error] if error else []
        else:
            custom.append(obj)
    if custom:
        proc = validate_custom_resources(custom)
        if proc.returncode != 0:
            lines = [line for line in proc.stdout.splitlines() if not line.endswith(" ok")]
            errors += lines or [f"custom resource validator failed ({proc.returncode}): {proc.stderr.strip()}"]
    return errors


# --- PushCluster: the operator's own CRD schema ----------------------------------

def operator_crd() -> dict:
    """The CRD as `push-operator crd` prints it (skips when the binary is not built)."""
    binary = require_binary("push-operator", "PUSH_OPERATOR_BIN")
    proc = subprocess.run([str(binary), "crd"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"push-operator crd failed: {proc.stderr}"
    return yaml.safe_load(proc.stdout)


def committed_crd() -> dict:
    """crds/pushcluster.yaml, the CRD the chart installs."""
    return yaml.safe_load(COMMITTED_CRD.read_text())


def crd_json_schema(crd: dict) -> dict:
    """The served version's openAPIV3Schema as a JSON Schema (see openapi_to_jsonschema).
    The API server always accepts apiVersion, kind and metadata at the root, even when
    the schema does not list them."""
    version = next(v for v in crd["spec"]["versions"] if v["served"])
    schema = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    schema["properties"] = {**implicit, **schema.get("properties", {})}
    return schema


def openapi_to_jsonschema(node):
    """openAPIV3Schema → JSON Schema, as the API server applies it with strict field
    validation (kubectl's default): `nullable` admits null, an object with `properties`
    rejects fields it does not list unless it preserves unknown fields, and the
    Kubernetes extensions (x-kubernetes-*) are dropped (CEL rules are not evaluated)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_schema_errors(obj: dict, schema: dict) -> list[str]:
    """`obj` against a schema from crd_json_schema: "<path>: <message>" per error."""
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
