"""Every examples/*.yaml against the CRD's own openAPIV3Schema (crds/pushcluster.yaml),
as the API server checks it with strict field validation; and the schema check can
fail (bad type, out-of-range value, unknown field)."""

from __future__ import annotations

import copy

import pytest
import yaml

from harness import REPO, committed_crd, crd_json_schema, crd_schema_errors, openapi_to_jsonschema

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    return crd_json_schema(committed_crd())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(example, crd_schema):
    doc = yaml.safe_load(example.read_text())
    assert crd_schema_errors(doc, crd_schema) == []


@pytest.mark.parametrize("spec_change, error", [
    ({"replicas": "three"}, "spec.replicas: 'three' is not of type 'integer'"),
    ({"replicas": 5000}, "spec.replicas: 5000 is greater than the maximum"),
    ({"replica": 3}, "spec: Additional properties are not allowed ('replica' was unexpected)"),
], ids=["bad-type", "above-maximum", "unknown-field"])
def test_crd_schema_rejects_a_bad_spec_naming_the_field(crd_schema, spec_change, error):
    bad = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    bad["spec"].update(spec_change)
    errors = crd_schema_errors(bad, crd_schema)
    assert any(e.startswith(error) for e in errors), errors


OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}}


@pytest.mark.parametrize("openapi, expected", [
    (OBJECT, {**OBJECT, "additionalProperties": False}),
    ({**OBJECT, "x-kubernetes-preserve-unknown-fields": True}, OBJECT),
    ({"type": "object", "additionalProperties": {"type": "string"}},
     {"type": "object", "additionalProperties": {"type": "string"}}),
    ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
    ({"type": "string", "nullable": False}, {"type": "string"}),
    ({"type": "object", "x-kubernetes-validations": [{"rule": "true"}]}, {"type": "object"}),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
     {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
], ids=["object-rejects-unknown-fields", "preserve-unknown-fields-keeps-them", "map-stays-open",
        "nullable-admits-null", "not-nullable-stays", "cel-rules-dropped", "int-or-string"])
def test_openapi_to_jsonschema(openapi, expected):
    assert openapi_to_jsonschema(copy.deepcopy(openapi)) == expected
