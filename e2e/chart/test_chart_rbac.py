"""Least privilege, derived from the code: the chart grants exactly the rules
`push-operator rbac` prints, no more and no less.

`push-operator rbac` (the operator's code derives it; its mock-API tests
check every call it makes is covered) prints one YAML mapping of PolicyRule
lists (rbac.authorization.k8s.io/v1 PolicyRule fields):

    namespaced:      # needed in every namespace whose PushClusters it manages
      - {apiGroups: [...], resources: [...], verbs: [...]}
    leaderElection:  # needed in the operator's own namespace (the Lease)
      - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [...]}
    cluster: []      # cluster-scoped resources, if any (optional key)
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from harness import find_binary
from harness.chart import RELEASE_NAMESPACE, VALUE_COMBINATIONS, render

Grant = tuple[str, str, str, str]  # (apiGroup, resource, verb, resourceName or "*")


def grants(rules: list[dict]) -> set[Grant]:
    """PolicyRules as the set of single permissions they grant."""
    out: set[Grant] = set()
    for rule in rules:
        assert not rule.get("nonResourceURLs"), f"non-resource URLs granted: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or ["*"]:
                        out.add((group, resource, verb, name))
    return out


@pytest.mark.parametrize(
    "rules, expected",
    [
        ([], set()),
        ([{"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "list"]}],
         {("", "pods", "get", "*"), ("", "pods", "list", "*"), ("apps", "pods", "get", "*"), ("apps", "pods", "list", "*")}),
        ([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"], "resourceNames": ["x"]}],
         {("coordination.k8s.io", "leases", "get", "x")}),
    ],
    ids=["no-rules", "cross-product", "resource-names"],
)
def test_grants_expands_rules(rules, expected):
    assert grants(rules) == expected


@pytest.fixture(scope="module")
def required() -> dict[str, set[Grant]]:
    binary = find_binary("push-operator", "PUSH_OPERATOR_BIN")
    if binary is None:
        pytest.fail("push-operator binary not found: cargo build -p push-operator (or set PUSH_OPERATOR_BIN)")
    proc = subprocess.run([binary, "rbac"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "unrecognized subcommand" in proc.stderr:
        pytest.skip(f"{binary} has no `rbac` subcommand yet (issue 3): the chart's rules cannot be checked against the code")
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert isinstance(printed, dict) and {"namespaced", "leaderElection"} <= set(printed), (
        f"`push-operator rbac` must print a mapping with namespaced/leaderElection rule lists, got: {proc.stdout[:400]}"
    )
    return {scope: grants(printed.get(scope) or []) for scope in ("namespaced", "leaderElection", "cluster")}


def assert_exactly(granted: set[Grant], needed: set[Grant], where: str) -> None:
    extra, missing = sorted(granted - needed), sorted(needed - granted)
    assert not extra and not missing, (
        f"{where}: granted but not needed (remove from the chart): {extra}; "
        f"needed but not granted (add to the chart): {missing}"
    )


def rules_of(objects: list[dict], kind: str, name_suffix: str = "", namespace: str | None = None) -> list[list[dict]]:
    return [
        o["rules"] for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"].endswith(name_suffix)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def test_cluster_wide_install_grants_exactly_what_the_operator_needs(helm, tmp_path, required):
    objects = render(helm, VALUE_COMBINATIONS["default"], tmp_path)
    cluster_roles = rules_of(objects, "ClusterRole")
    assert len(cluster_roles) == 1
    assert_exactly(grants(cluster_roles[0]), required["namespaced"] | required["cluster"], "ClusterRole")
    leader = rules_of(objects, "Role", "-leader-election", RELEASE_NAMESPACE)
    assert len(leader) == 1
    assert_exactly(grants(leader[0]), required["leaderElection"], "leader-election Role")


def test_namespaced_install_grants_exactly_what_the_operator_needs_in_each_namespace(helm, tmp_path, required):
    objects = render(helm, VALUE_COMBINATIONS["namespaced-rbac"], tmp_path)
    for namespace in ("team-a", "team-b"):
        roles = rules_of(objects, "Role", namespace=namespace)
        assert len(roles) == 1, f"expected one Role in {namespace}"
        assert_exactly(grants(roles[0]), required["namespaced"], f"Role in {namespace}")
    cluster_roles = rules_of(objects, "ClusterRole")
    if required["cluster"]:
        assert len(cluster_roles) == 1
        assert_exactly(grants(cluster_roles[0]), required["cluster"], "ClusterRole")
    else:
        assert cluster_roles == [], "nothing cluster-wide when namespaces are listed"


def test_no_wildcards_anywhere(helm, tmp_path):
    for combo in ("default", "namespaced-rbac"):
        for obj in render(helm, VALUE_COMBINATIONS[combo], tmp_path):
            for rule in obj.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"{obj['kind']}/{obj['metadata']['name']} grants * {field}"
