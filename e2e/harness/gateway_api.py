"""The Gateway API's own CRDs (standard and experimental channel) from its Go module
(sigs.k8s.io/gateway-api, fetched into the per-machine module cache by .ci/setup): what a
cluster admin installs, judged by the real API server."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

VERSION = "v1.6.3"
MODULE = f"sigs.k8s.io/gateway-api@{VERSION}"


@functools.cache
def module_dir() -> Path:
    cache = Path(os.environ.get("PUSHCLUSTER_CACHE", "/var/cache/pushcluster"))
    env = {**os.environ, "GOMODCACHE": str(cache / "go-mod"), "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local"}
    out = subprocess.run(["go", "mod", "download", "-json", MODULE], env=env, capture_output=True, text=True,
                         timeout=300, cwd=cache)
    assert out.returncode == 0, f"go mod download {MODULE}: {out.stderr or out.stdout}"
    return Path(json.loads(out.stdout)["Dir"])


def crd(channel: str, resource: str = "httproutes") -> Path:
    """`channel`: "standard" or "experimental"."""
    return module_dir() / "config" / "crd" / channel / f"gateway.networking.k8s.io_{resource}.yaml"
