"""Smoke test of the benchmark's load generator (bench/loadgen).

A tiny fan-out run against a real server (push-server, and the Node reference
cluster node), while the official socket.io JS client sits in the same rooms:
every count the generator reports must match what the official client saw.

Binaries and processes come from e2e/harness (`require_binary`, the
`processes` fixture). Servers are started by `push-loadgen serve` (the
generator's own launcher, the one `bench/run` uses), which takes every name
from the contract crate and prints them for the JS client.
"""

import json
import select
import subprocess
import time
from pathlib import Path

import pytest

from harness import REPO, require_binary

NODE_MODULES = REPO / "bench" / "node_modules"
NODE_ENV = {"NODE_PATH": str(NODE_MODULES)}
CLIENTS = 20
ROOMS = 2
RATE = 20
STEP_SECS = 2
TOKEN = "smoke-token"


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


def spawn_piped(processes, cmd, name):
    return processes.start(cmd, name, env=NODE_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)


def start_server(processes, server: str) -> dict:
    cmd = [require_binary("push-loadgen", "PUSH_LOADGEN_BIN"), "serve", "--server", server, "--api-token", TOKEN,
           "--node-script", REPO / "bench" / "node-reference" / "server.js"]
    if server == "push":
        cmd += ["--push-server-bin", require_binary("push-server", "PUSH_SERVER_BIN")]
    proc = spawn_piped(processes, cmd, f"serve-{server}")
    return read_json_line(proc, 60, f"push-loadgen serve --server {server}")


def start_js_client(processes, info: dict, transport: str, room: str) -> subprocess.Popen:
    script = Path(__file__).with_name("js_room_counter.js")
    cmd = ["node", script, info["urls"][0], transport, room, json.dumps(info["contract"]), info["benchEvent"]]
    proc = spawn_piped(processes, cmd, f"official-client-{room}")
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


@pytest.mark.parametrize(
    "server,transport",
    [
        ("push", "websocket"),
        ("push", "polling"),
        ("node", "websocket"),
        ("node", "polling"),
    ],
)
def test_loadgen_counts_match_the_official_client(processes, tmp_path, server, transport):
    info = start_server(processes, server)
    rooms = info["roomNames"]
    referees = [start_js_client(processes, info, transport, room) for room in rooms[:ROOMS]]
    loadgen = require_binary("push-loadgen", "PUSH_LOADGEN_BIN")

    out = tmp_path / "fanout.json"
    run = subprocess.run(
        [loadgen, "fanout", "--url", info["urls"][0], "--publish-url", info["publishUrls"][0],
         "--api-token", TOKEN, "--transport", transport,
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
