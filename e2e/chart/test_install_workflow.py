"""The kind workflow cannot run here (no container engine, no GitHub): check
it against GitHub's workflow schema and check that what it builds, loads and
runs is what the repository has."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from harness import REPO

WORKFLOW = REPO / ".github" / "workflows" / "kind-e2e.yaml"


def check_jsonschema() -> str:
    found = shutil.which("check-jsonschema")
    if not found:
        pytest.fail("check-jsonschema not found: pip install -r e2e/requirements.txt")
    return found


def test_workflow_matches_the_github_workflow_schema():
    proc = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["kind-e2e"]["runs-on"] = None
    broken["jobs"]["kind-e2e"]["stepz"] = broken["jobs"]["kind-e2e"].pop("steps")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


def job() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind-e2e"]


def steps_using(prefix: str) -> list[dict]:
    return [s for s in job()["steps"] if s.get("uses", "").startswith(prefix)]


def test_workflow_builds_the_repository_dockerfiles_into_the_images_the_suite_uses():
    env = job()["env"]
    builds = {s["with"]["file"]: s["with"]["tags"] for s in steps_using("docker/build-push-action@")}
    assert builds == {
        "operator/Dockerfile": "${{ env.PUSH_OPERATOR_IMAGE }}",
        "push-server/Dockerfile": "${{ env.PUSH_SERVER_IMAGE }}",
    }
    for dockerfile in builds:
        assert (REPO / dockerfile).is_file()
    assert all(s["with"]["load"] is True and s["with"]["context"] == "." for s in steps_using("docker/build-push-action@"))
    load = next(s["run"] for s in job()["steps"] if "kind load" in s.get("run", ""))
    for var in ("PUSH_OPERATOR_IMAGE", "PUSH_SERVER_IMAGE"):
        assert f'kind load docker-image "${var}" --name "$CLUSTER_NAME"' in load
        assert ":" in env[var] and not env[var].endswith(":latest"), "a :latest tag would make kind pull instead"


def test_workflow_covers_the_oldest_and_newest_supported_kubernetes():
    matrix = job()["strategy"]["matrix"]["include"]
    versions = sorted(entry["kubernetes"] for entry in matrix)
    assert versions[0].startswith("v1.30.") and versions[-1].startswith("v1.37.")
    for entry in matrix:
        assert entry["node_image"].startswith(f"kindest/node:{entry['kubernetes']}@sha256:"), "pin node images by digest"


def test_workflow_runs_the_cluster_suite_against_kinds_cluster():
    """KUBECONFIG must name kind's cluster: unset, the suite starts a control plane of its
    own; set but unreachable, it fails (it never skips)."""
    runs = [s.get("run", "") for s in job()["steps"]]
    assert any("pytest e2e/cluster/test_user_path.py" in r and 'KUBECONFIG="$HOME/.kube/config"' in r
               for r in runs), runs
    assert any("pip install -r e2e/requirements.txt" in r for r in runs)
    assert (REPO / "e2e" / "cluster" / "test_user_path.py").is_file()
    kind_step = steps_using("helm/kind-action@")[0]
    assert kind_step["with"]["cluster_name"] == "${{ env.CLUSTER_NAME }}"
