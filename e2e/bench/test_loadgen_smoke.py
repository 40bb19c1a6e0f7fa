"""Smoke test of the benchmark's load generator (bench/loadgen).

A tiny fan-out run against a real server (push-server, and the Node reference
cluster node), while the official socket.io JS client sits in the same rooms:
every count the generator reports must match what the official client saw.

Local helpers (no e2e/harness dependency): binaries are found through
PUSH_LOADGEN_BIN / PUSH_SERVER_BIN, else $CARGO_TARGET_DIR/debug, else
<repo>/target/debug. Servers are started by `push-loadgen serve`, which takes
every name from the contract crate and prints them for the JS client.
"""

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "bench" / "node_modules"
CLIENTS = 20
ROOMS = 2
RATE = 20
STEP_SECS = 2
TOKEN = "smoke-token"


def find_bin(env_var: str, name: str) -> Path | None:
    candidates = [os.environ.get(env_var)]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(str(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / name))
    candidates.append(str(REPO / "target" / "debug" / name))
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def read_json_line(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """Next stdout line of `proc` as JSON, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what}: no output within {timeout}s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"{what} exited with {proc.wait()} before answering")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue  # a log line


@pytest.fixture
def spawn():
    """Starts processes in their own process group; kills every group at teardown."""
    procs = []

    def start(cmd, **kw):
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            cwd=REPO,
            **kw,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def loadgen() -> Path:
    path = find_bin("PUSH_LOADGEN_BIN", "push-loadgen")
    if path is None:
        pytest.skip("push-loadgen is not built: run `cargo build -p push-loadgen` first")
    return path


def start_server(spawn, loadgen: Path, server: str) -> dict:
    cmd = [loadgen, "serve", "--server", server, "--api-token", TOKEN,
           "--node-script", REPO / "bench" / "node-reference" / "server.js"]
    if server == "push":
        push_bin = find_bin("PUSH_SERVER_BIN", "push-server")
        if push_bin is None:
            pytest.skip("push-server is not built: run `cargo build -p push-server` first")
        cmd += ["--push-server-bin", push_bin]
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    return read_json_line(spawn(cmd, env=env), 60, f"push-loadgen serve --server {server}")


def start_js_client(spawn, info: dict, transport: str, room: str) -> subprocess.Popen:
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    proc = spawn(["node", Path(__file__).with_name("js_room_counter.js"), info["urls"][0], transport, room,
                  json.dumps(info["contract"]), info["benchEvent"]], env=env)
    hello = read_json_line(proc, 30, f"official client in {room}")
    assert hello.get("ready") is True, hello
    assert hello["transport"] == transport, hello
    return proc


def js_count(proc: subprocess.Popen, expected: int) -> dict:
    """Asks the official client for its count until it reaches `expected` or 5 s pass."""
    deadline = time.monotonic() + 5
    while True:
        proc.stdin.write("report\n")
        proc.stdin.flush()
        got = read_json_line(proc, 10, "official client report")
        if got["received"] >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("server", ["push", "node"])
def test_loadgen_counts_match_the_official_client(spawn, loadgen, tmp_path, server, transport):
    info = start_server(spawn, loadgen, server)
    rooms = info["roomNames"]
    referees = [start_js_client(spawn, info, transport, room) for room in rooms[:ROOMS]]

    out = tmp_path / "fanout.json"
    run = subprocess.run(
        [loadgen, "fanout", "--url", info["urls"][0], "--api-token", TOKEN, "--transport", transport,
         "--clients", str(CLIENTS), "--rooms", str(ROOMS), "--rates", str(RATE),
         "--step-secs", str(STEP_SECS), "--out", out],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["connected"] == CLIENTS, result["first_errors"]
    assert result["members_per_room"] == [CLIENTS // ROOMS] * ROOMS
    assert result["dropped"] == 0
    (step,) = result["steps"]
    assert step["publish_failed"] == 0, step["first_error"]
    assert step["accepted"] == RATE * STEP_SECS

    seen = [js_count(proc, step["accepted_per_room"][i]) for i, proc in enumerate(referees)]
    for i, got in enumerate(seen):
        assert got["malformed"] == [], got
        assert got["connected"], f"official client in {rooms[i]} lost its connection"
        # The official client in room i saw exactly what was published there...
        assert got["received"] == step["accepted_per_room"][i], (rooms[i], got, step)
    # ...and the generator counted the same for each of its members.
    per_member = CLIENTS // ROOMS
    assert step["received"] == per_member * sum(g["received"] for g in seen), step
    assert step["expected"] == step["received"] and step["lost"] == 0, step
    assert 0 < step["latency"]["p50_ms"] <= step["latency"]["p99_ms"] < 1000, step["latency"]
