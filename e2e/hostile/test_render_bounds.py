"""Hostile-input finding 10: `render` on hostile YAML — 100k nested `[` (a 200 KB file) took
19 s before failing; ~8 ms per document made a 262k-document file run for minutes (here 200k
documents, which fit the 1 MiB size bound); two documents with the same name rendered both. Now each is refused in well under a second by
the manifest front door's bounds, checked before any YAML parsing. (Finding 9, `local`
running what `render` refuses: e2e/local/test_local_front_door.py.)"""

from __future__ import annotations

import subprocess
import time

import pytest
from harness import require_binary

HEAD = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: a}\nspec: {}\n"


@pytest.mark.parametrize("text, message", [
    (HEAD.replace("spec: {}", "spec: " + "[" * 100_000), "nested deeper than"),
    ("---\n" * 200_000, "YAML documents"),
    (HEAD + "---\n" + HEAD, "already defined by document 1"),
    (HEAD + "# " + "x" * (2 << 20) + "\n", "bytes; at most"),
], ids=["100k-nested-brackets", "200k-documents", "duplicate-name", "2-MiB-file"])
def test_render_refuses_hostile_yaml_in_under_a_second(text, message):
    operator = require_binary("push-operator", "PUSH_OPERATOR_BIN")
    started = time.monotonic()
    proc = subprocess.run([operator, "render", "-f", "-"], input=text, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[:500]
    assert proc.stdout == ""
    assert took < 1.0, f"took {took:.2f} s"
    print(f"\nrender refused {message!r} in {took:.3f} s")
