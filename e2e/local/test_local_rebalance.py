"""Rebalancing after a scale-out: 60 official clients (WebSocket and long-polling) on one
node, the manifest edited to 3. Once the new nodes are Ready, the hot node moves its
surplus over the rebalance window; with cookie affinity the moved clients land on the new
nodes (nginx sends handshakes elsewhere while it sheds, whatever their cookie names), so
every node ends within 0.75-1.25x of the mean; every message published meanwhile arrives
once, in order; nobody is moved twice."""

from __future__ import annotations

import time
from collections import Counter

import requests

from harness import wait_until
from harness.continuity import ROOMS, RetryingPublisher, check_after_the_stream
from harness.local import CONTRACT, READY, LocalCluster, clients, manifest, record_measurement

WINDOW_S = 5


def metric(node: dict, name: str) -> float:
    text = requests.get(f"http://{node['admin']}{CONTRACT['paths']['METRICS']}", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_a_scale_out_moves_the_hot_nodes_surplus_to_the_new_nodes(tmp_path, processes):
    spec = manifest("rebalance", 1, 2, "cookie")
    spec["spec"]["autoscaling"] = {"rebalance": {"windowSeconds": WINDOW_S}}
    with LocalCluster(tmp_path, spec) as cluster:
        common = {"url": cluster.endpoint, "withCredentials": True, "rooms": ROOMS, "count": 30,
                  "reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500}
        ws = clients(processes, {**common, "transports": ["websocket"]}, name="rebalance-ws")
        polling = clients(processes, {**common, "transports": ["polling"]}, name="rebalance-polling")
        try:
            ws.wait_ready()
            polling.wait_ready()
            [hot] = cluster.nodes(READY)
            assert cluster.connections(hot) == 60
            with RetryingPublisher([cluster.api_endpoint], cluster.token, 20) as publisher:
                wait_until(lambda: len(publisher.accepted) >= 20, 30, "1 s of 202s")
                edited = time.monotonic()
                edited_ms = time.time() * 1000
                cluster.set_replicas(3)
                wait_until(lambda: len(cluster.nodes(READY)) == 3, 60, "3 ready nodes")

                def spread() -> dict[str, int]:
                    return {n["name"]: cluster.connections(n) for n in cluster.nodes(READY)}

                def even() -> dict[str, int] | None:
                    s = spread()
                    mean = sum(s.values()) / len(s)
                    return s if sum(s.values()) == 60 and all(0.75 * mean <= c <= 1.25 * mean for c in s.values()) else None
                final = wait_until(even, 60, "every node within 0.75-1.25x of the mean")
                evened_s = time.monotonic() - edited
                at = len(publisher.accepted)
                wait_until(lambda: len(publisher.accepted) >= at + 20, 30, "1 s more of 202s")
            check_after_the_stream(cluster.publish, (ws, polling), publisher)
            moved = Counter((name, e["i"]) for name, swarm in (("ws", ws), ("polling", polling))
                            for e in swarm.of("disconnect") if e["t"] >= edited_ms)
            rebalanced = sum(metric(n, CONTRACT["metrics"]["REBALANCED"]) for n in cluster.nodes(READY))
            record_measurement("rebalance_after_scale_out", {
                "spread": final, "seconds_to_even": round(evened_s, 1), "window_s": WINDOW_S,
                "moved": len(moved), "rebalanced_metric": rebalanced, "published": len(publisher.accepted)})
            print(f"\nscale 1 -> 3 with 60 clients: {final} after {evened_s:.1f} s (window {WINDOW_S} s); "
                  f"{len(moved)} clients moved, each once; {len(publisher.accepted)} messages, each received once")
            assert moved and max(moved.values()) == 1, f"clients moved more than once: {moved.most_common(3)}"
            assert rebalanced == len(moved) == 40, (rebalanced, len(moved))
            assert CONTRACT["local_mode"]["REBALANCE_MESSAGE"] in cluster.log_tail(200)
        finally:
            ws.close()
            polling.close()
