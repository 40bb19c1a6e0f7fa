"""Each vendored crate is exactly its published release plus our patch series."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("crate", ["engineioxide", "socketioxide"])
def test_vendored_crate_is_the_release_plus_the_patches(crate):
    out = subprocess.run([ROOT / "vendor" / "rebase", "--check", crate], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert f"vendor/{crate} = {crate}" in out.stdout


@pytest.mark.parametrize("crate", ["engineioxide", "socketioxide"])
def test_the_workspace_builds_against_the_vendored_crates(crate):
    manifest = (ROOT / "Cargo.toml").read_text()
    assert f'{crate} = {{ path = "vendor/{crate}" }}' in manifest
    assert 'source = "registry+' not in lock_entry(crate)


def lock_entry(name: str) -> str:
    lock = (ROOT / "Cargo.lock").read_text()
    for block in lock.split("[[package]]"):
        if f'\nname = "{name}"\n' in block:
            return block
    raise AssertionError(f"{name} not in Cargo.lock")
