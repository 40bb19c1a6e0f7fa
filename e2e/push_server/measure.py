"""Measures a release push-server: idle RSS, RSS with 1,000 idle WebSocket clients, and
publish→delivery latency across two nodes (HTTP publish on node B, official JS client
on node A, same machine clock).

    cargo build --release -p push-server
    cd e2e && PUSH_SERVER_BIN=$CARGO_TARGET_DIR/release/push-server python3 -m push_server.measure

Prints one JSON object. Not a test: run by hand (figures depend on the machine).
"""

import json
import statistics
import tempfile
import time
from pathlib import Path

from harness import NodeClients, Processes, PushServer, RedisServer, wait_until

TOKEN = "measure-token"
CLIENTS = 1000
MESSAGES = 500


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes(Path(tmp))
        try:
            redis = RedisServer(procs).start()
            a = PushServer(procs, redis.url, {"API_TOKEN": TOKEN, "LOG": "warn", "HANDSHAKES_PER_SECOND": 0}, node_id="a").start()
            b = PushServer(procs, redis.url, {"API_TOKEN": TOKEN, "LOG": "warn", "HANDSHAKES_PER_SECOND": 0}, node_id="b").start()
            time.sleep(1)  # let the allocator settle before the idle reading (a measurement, not a wait)
            idle = rss_kib(a.proc.pid)

            idle_clients = NodeClients(procs, {"url": a.url, "transports": ["websocket"], "count": CLIENTS},
                                       name="idle-clients")
            idle_clients.wait("ready", timeout=120)
            wait_until(lambda: a.connections() == CLIENTS, 60, f"{CLIENTS} connections")
            time.sleep(2)
            loaded = rss_kib(a.proc.pid)

            listener = NodeClients(procs, {"url": a.url, "transports": ["websocket"], "rooms": ["lat"]},
                                   name="listener")
            listener.wait_ready()
            latencies_ms = []
            for n in range(MESSAGES):
                sent_us = time.time_ns() // 1000
                assert b.publish({"event": "lat", "data": {"n": n, "sent_us": sent_us}, "room": "lat"},
                                 TOKEN).status_code == 202
                wait_until(lambda: len(listener.events("lat")) > n, 10, f"message {n}")
                time.sleep(0.005)
            for event in listener.events("lat"):
                latencies_ms.append((event["us"] - event["data"]["sent_us"]) / 1000)
            assert len(latencies_ms) == MESSAGES, "exactly once"
            q = statistics.quantiles(latencies_ms, n=100)
            print(json.dumps({
                "binary": str(a.binary),
                "idle_rss_mib": round(idle / 1024, 1),
                "rss_with_1000_ws_clients_mib": round(loaded / 1024, 1),
                "per_client_kib": round((loaded - idle) / CLIENTS, 1),
                "latency_cross_node_ms": {"messages": MESSAGES, "p50": round(q[49], 2), "p99": round(q[98], 2),
                                          "max": round(max(latencies_ms), 2)},
            }, indent=2))
        finally:
            procs.kill_all()


if __name__ == "__main__":
    main()
