#!/usr/bin/env python3
"""Cost per publish against the node count (#24): 1, 2, 4 and 8 push-server nodes on one
redis-server (history on), CLIENTS official-protocol clients (python-socketio, WebSocket)
each in a room of its own, all on node 0; PUBLISHES publishes at RATE per second straight
to node 0's API, round robin over the rooms. Per publish: Redis's network output
(`INFO stats` total_net_output_bytes), Redis's CPU (`INFO cpu`) and the CPU of all nodes
together (/proc/PID/stat), each with the nodes reading the whole fan-out log (`log`) and
receiving only their rooms (`interest`, PUSH_FANOUT), alternately. Every client must get
every message of its room exactly once, else the run fails. Prints the Markdown section.

    bench/scaling.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import socketio

import local_redis
from local_redis import cli, free_port

ROOT = Path(__file__).resolve().parent.parent
NODES = tuple(int(n) for n in os.environ.get("NODES", "1,2,4,8").split(","))
MODES = ("log", "interest")
CLIENTS = int(os.environ.get("CLIENTS", "100"))
PUBLISHES = int(os.environ.get("PUBLISHES", "2000"))
RATE = int(os.environ.get("RATE", "200"))
SERVER_CPUS = os.environ.get("SERVER_CPUS", "0")
TOKEN = "bench-token"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def wait(what: str, check, timeout: float = 20.0) -> None:
    local_redis.wait(f"scaling: {what}", check, timeout,
                     (OSError, ValueError, requests.RequestException, subprocess.SubprocessError))


def info(port: int, section: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in cli(port, "INFO", section).splitlines() if ":" in line)


def redis_totals(port: int) -> tuple[int, float]:
    """Bytes Redis has sent, and its CPU seconds (user + system, main thread and all)."""
    stats, cpu = info(port, "stats"), info(port, "cpu")
    return int(stats["total_net_output_bytes"]), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, workdir: Path, name: str, redis_port: int, mode: str):
        self.addresses = workdir / f"{name}.json"
        env = {**os.environ,
               "PUSH_LISTEN": "127.0.0.1:0", "PUSH_ADMIN_LISTEN": "127.0.0.1:0",
               "PUSH_ADDRESS_FILE": str(self.addresses), "PUSH_NODE_ID": name,
               "PUSH_REDIS_URL": f"redis://127.0.0.1:{redis_port}", "PUSH_API_TOKEN": TOKEN,
               "PUSH_HISTORY_MAX_MESSAGES": "1000", "PUSH_HISTORY_TTL_SECONDS": "300",
               "PUSH_FANOUT": mode, "PUSH_LOG": "warn"}
        self.log = open(workdir / f"{name}.log", "w")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPUS, str(TARGET / "release" / "push-server")],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait(f"{name} listening", self.addresses.exists)
        wait(f"{name} address file", lambda: json.loads(self.addresses.read_text()))
        got = json.loads(self.addresses.read_text())
        self.client_url = f"http://{got['client']}"
        self.admin_url = f"http://{got['admin']}"
        wait(f"{name} ready", lambda: requests.get(f"{self.admin_url}/readyz", timeout=2).status_code == 200)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Client:
    def __init__(self, url: str, room: str):
        self.room = room
        self.got: list[int] = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)

        @self.sio.on("m")
        def on_message(data, *_offset):
            with self.lock:
                self.got.append(data["n"])

        self.sio.connect(url, transports=["websocket"], wait_timeout=10)
        answer = self.sio.call("subscribe", {"rooms": [room]}, timeout=10)
        if answer.get("joined") != [room]:
            raise SystemExit(f"scaling: subscribe to {room} answered {answer}")


def run(mode: str, nodes: int, workdir: Path) -> dict:
    port = free_port()
    redis = subprocess.Popen(["taskset", "-c", SERVER_CPUS, "redis-server", "--bind", "127.0.0.1", "--port",
                              str(port), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started: list[Node] = []
    clients: list[Client] = []
    try:
        wait("redis", lambda: cli(port, "PING").strip() == "PONG")
        started = [Node(workdir, f"{mode}-{nodes}-{k}", port, mode) for k in range(nodes)]
        rooms = [f"r{k}" for k in range(CLIENTS)]
        clients = [Client(started[0].client_url, room) for room in rooms]
        time.sleep(1.0)  # not readiness: lets the nodes settle before the counters are read
        out0, redis_cpu0 = redis_totals(port)
        nodes_cpu0 = sum(cpu_seconds(n.proc.pid) for n in started)
        session = requests.Session()
        url = f"{started[0].admin_url}/api/v1/publish"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        begin = time.monotonic()
        refused = 0
        for k in range(PUBLISHES):
            due = begin + k / RATE
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            answer = session.post(url, json={"event": "m", "room": rooms[k % CLIENTS], "data": {"n": k}},
                                  headers=headers, timeout=10)
            refused += answer.status_code != 202
        owed = {room: [k for k in range(PUBLISHES) if rooms[k % CLIENTS] == room] for room in rooms}
        wait("every message delivered",
             lambda: all(len(c.got) >= len(owed[c.room]) for c in clients), timeout=60)
        time.sleep(0.5)  # not readiness: the nodes finish what they read before the counters
        out1, redis_cpu1 = redis_totals(port)
        nodes_cpu1 = sum(cpu_seconds(n.proc.pid) for n in started)
        wrong = [c.room for c in clients if c.got != owed[c.room]]
        if refused or wrong:
            raise SystemExit(f"scaling: {mode} with {nodes} nodes: {refused} publishes refused, "
                             f"{len(wrong)} clients without exactly their messages in order")
        return {"mode": mode, "nodes": nodes, "publishes": PUBLISHES,
                "redis_out_bytes_per_publish": (out1 - out0) / PUBLISHES,
                "redis_cpu_us_per_publish": (redis_cpu1 - redis_cpu0) * 1e6 / PUBLISHES,
                "nodes_cpu_us_per_publish": (nodes_cpu1 - nodes_cpu0) * 1e6 / PUBLISHES}
    finally:
        for c in clients:
            c.sio.disconnect()
        for n in started:
            n.stop()
        redis.terminate()
        redis.wait(timeout=10)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        for nodes in NODES:
            for mode in MODES:
                row = run(mode, nodes, Path(tmp))
                print(f"[scaling] {json.dumps(row)}", file=sys.stderr)
                rows.append(row)
    (out / "scaling.json").write_text(json.dumps(rows, indent=1))
    by = {(r["mode"], r["nodes"]): r for r in rows}
    figures = (("redis_out_bytes_per_publish", "Redis output per publish (bytes)", "{:.0f}"),
               ("redis_cpu_us_per_publish", "Redis CPU per publish (µs)", "{:.1f}"),
               ("nodes_cpu_us_per_publish", "CPU of all nodes per publish (µs)", "{:.1f}"))
    print("## Cost per publish against the node count (delivery by log and by interest)\n")
    print(f"`bench/run --only scaling` (`bench/scaling.py`): redis-server and every push-server node on CPU "
          f"{SERVER_CPUS}, history on (`maxMessages` 1000); {CLIENTS} python-socketio clients (WebSocket) in a "
          f"room each, all on node 0; {PUBLISHES} publishes at {RATE}/s to node 0's API, round robin over the "
          f"rooms; every client got exactly its room's messages in order (checked). `log`: every node reads the "
          f"whole fan-out log (the default); `interest`: `PUSH_FANOUT=interest`, each node subscribes to its "
          f"rooms' channels. Target (#24): at {max(NODES)} nodes ≤ 1.5× the figure at {min(NODES)}.\n")
    header = "| figure | " + " | ".join(f"{m}, {n} node{'s' if n > 1 else ''}" for m in MODES for n in NODES)
    header += " | " + " | ".join(f"{m}: {max(NODES)} / {min(NODES)}" for m in MODES) + " |"
    print(header)
    print("| --- |" + " ---: |" * (len(MODES) * len(NODES) + len(MODES)))
    for key, label, fmt in figures:
        cells = [fmt.format(by[(m, n)][key]) for m in MODES for n in NODES]
        ratios = [f"{by[(m, max(NODES))][key] / max(by[(m, min(NODES))][key], 1e-9):.2f}×" for m in MODES]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    print()


if __name__ == "__main__":
    main()
