"""`push-operator local` reads manifests through the same front door as `render`: every
manifest render refuses, local refuses too, with the same message, within seconds, and
without starting a single process (before, a misspelt field, `replicas: 1000000000`,
negative values, a wrong kind or apiVersion were run: the huge one started 1,200 nodes)."""

from __future__ import annotations

import subprocess
import time

import pytest
from harness import require_binary
from harness.invalid_specs import INVALID_SPECS, manifest

HEAD = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: bad}\n"
REFUSED = [(case, manifest(spec)) for case, spec, _ in INVALID_SPECS] + [
    ("misspelt-drain", HEAD + "spec: {drainSecnds: 5}\n"),
    ("a-billion-replicas", HEAD + "spec: {replicas: 1000000000}\n"),
    ("wrong-kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\n"),
    ("wrong-api-version", "apiVersion: pushcluster.dev/v2\nkind: PushCluster\nmetadata: {name: bad}\nspec: {}\n"),
    ("two-clusters-one-name", HEAD + "spec: {}\n---\n" + HEAD + "spec: {}\n"),
    ("deeply-nested", HEAD + "spec: " + "[" * 100_000 + "\n"),
]


@pytest.mark.parametrize("text", [t for _, t in REFUSED], ids=[c for c, _ in REFUSED])
def test_local_refuses_what_render_refuses_with_the_same_message(text, tmp_path):
    operator = require_binary("push-operator", "PUSH_OPERATOR_BIN")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    rendered = subprocess.run([operator, "render", "-f", path], capture_output=True, text=True, timeout=10)
    assert rendered.returncode != 0 and rendered.stderr.startswith("error: "), rendered.stderr
    message = rendered.stderr.removeprefix("error: ").strip()

    state = tmp_path / "state.json"
    started = time.monotonic()
    local = subprocess.run([operator, "local", "-f", path, "--port", "0", "--state-file", state],
                           capture_output=True, text=True, timeout=10)
    assert local.returncode != 0, local.stderr
    assert time.monotonic() - started < 10
    assert f"error: {path}: {message}" in local.stderr, local.stderr
    assert not state.exists(), "local started processes for a refused manifest"
    assert "panicked" not in local.stderr
