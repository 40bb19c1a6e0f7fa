"""Repository paths, the contract, binaries, ports and polling."""

import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@functools.cache
def contract() -> dict:
    """e2e/contract.json: {"env": {"LISTEN": "PUSH_LISTEN", ...}, "paths": {...}, ...}."""
    return json.loads((REPO / "e2e" / "contract.json").read_text())


def binary_env_var(name: str) -> str:
    """The variable naming a binary's path: push-server → PUSH_SERVER_BIN."""
    return f"{name.upper().replace('-', '_')}_BIN"


def find_binary(name: str, env_var: str | None = None) -> Path | None:
    """$ENV_VAR (default: binary_env_var(name)), else $CARGO_TARGET_DIR/debug/<name>, else
    <repo>/target/debug/<name>."""
    candidates = [os.environ.get(env_var or binary_env_var(name))]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(str(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / name))
    candidates.append(str(REPO / "target" / "debug" / name))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def missing_build(message: str) -> NoReturn:
    """Something the tests need was not built: in CI a broken build, never a reason to
    skip; elsewhere a skip that says how to build it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str, env_var: str | None = None) -> Path:
    path = find_binary(name, env_var)
    if path is None:
        missing_build(f"{name} not built: run `cargo build -p {name}` or set {env_var or binary_env_var(name)}")
    return path


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not Path(path).is_file():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.05, process: subprocess.Popen | None = None) -> T:
    """Polls `predicate` until it returns something truthy; fails after `timeout`.

    With `process`, fails at once when that process has exited (its exit code and the
    last lines of its log in the message): a crashed server is not a slow one."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"{what}: the process exited with code {process.returncode} before that; "
                f"last lines of its log:\n{log_tail(getattr(process, 'log_path', None))}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 (a probe may fail while starting)
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)
