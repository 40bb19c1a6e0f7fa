"""Message continuity through the loss of a node (#13): while a backend publishes 100
numbered messages a second to a room and to a user, the busiest node is SIGKILLed. Its
clients (the official socket.io client, unchanged, over WebSocket and long-polling)
reconnect through nginx to another node, send their `{pid, offset}`, and get
`socket.recovered === true` and every message they missed; every client ends with every
message exactly once and in order."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness import wait_until
from harness.local import READY, LocalCluster, clients, manifest, record_measurement

PER_TRANSPORT = 6
RATE = 100  # messages per second, alternating room and user


class Publisher:
    """Publishes `{"n": k}` at RATE, alternating room `news` and user `u1`; remembers
    which were answered 202 (owed to every client) and which were sent at all."""

    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster
        self.accepted: list[int] = []
        self.sent: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        k = 0
        start = time.monotonic()
        while not self.stop.is_set():
            target = {"room": "news"} if k % 2 == 0 else {"user": "u1"}
            self.sent.append(k)
            try:
                if self.cluster.publish({"event": "seq", "data": {"n": k}, **target}).status_code == 202:
                    self.accepted.append(k)
            except Exception:  # noqa: BLE001 - a refused publish is simply not owed
                pass
            k += 1
            self.stop.wait(max(0.0, start + k / RATE - time.monotonic()))

    def __enter__(self) -> "Publisher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def received(swarm, i: int) -> list[int]:
    return [e["data"]["n"] for e in swarm.events("seq", i=i)]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_clients_of_a_sigkilled_node_recover_every_message_once_in_order(tmp_path, processes, transport):
    with LocalCluster(tmp_path, manifest("continuity", 3, 4, "cookie")) as cluster:
        swarm = clients(processes, {"url": cluster.endpoint, "withCredentials": True, "count": PER_TRANSPORT * 2,
                                    "transports": [transport], "rooms": ["news", "user:u1"]})
        try:
            swarm.wait_ready()
            swarm.wait("subscribed", PER_TRANSPORT * 2)
            nodes = cluster.nodes(READY)
            load = {n["name"]: cluster.connections(n) for n in nodes}
            victim = max(nodes, key=lambda n: load[n["name"]])
            assert load[victim["name"]] > 0, load
            with Publisher(cluster) as publisher:
                wait_until(lambda: len(publisher.accepted) > RATE, 10, "a second of messages")
                killed_at = time.time() * 1000
                os.kill(victim["pid"], signal.SIGKILL)

                def moved():
                    gone = {e["i"] for e in swarm.of("disconnect") if e["t"] >= killed_at}
                    back = {e["i"] for e in swarm.of("connected") if e["t"] >= killed_at}
                    return gone if len(gone) >= load[victim["name"]] and gone <= back else None
                affected = wait_until(moved, 30, f"the {load[victim['name']]} clients of {victim['name']} back")
                recovered_at = time.time() * 1000
                wait_until(lambda: time.time() * 1000 - recovered_at > 2000, 5, "two more seconds of messages")
            assert cluster.publish({"event": "fence", "data": 1, "broadcast": True}).status_code == 202
            wait_until(lambda: len(swarm.events("fence")) >= swarm.spec["count"], 20, "the fence everywhere")

            reconnects = [e for e in swarm.of("connected") if e["t"] >= killed_at]
            assert {e["i"] for e in reconnects} == affected, "only the victim's clients reconnected"
            assert all(e["recovered"] is True for e in reconnects), reconnects
            accepted = set(publisher.accepted)
            sent = set(publisher.sent)
            for i in range(swarm.spec["count"]):
                got = received(swarm, i)
                assert len(got) == len(set(got)), f"client {i}: duplicates {sorted(n for n in got if got.count(n) > 1)[:10]}"
                assert got == sorted(got), f"client {i}: out of order"
                missing = sorted(accepted - set(got))
                assert not missing, f"client {i} ({'moved' if i in affected else 'stayed'}): missed {missing[:20]} of {len(accepted)}"
                assert set(got) <= sent
                offsets = [e["offset"] for e in swarm.events("seq", i=i)]
                assert all(offsets), f"client {i}: an event without its offset"
            replayed = sum(float(line.rsplit(" ", 1)[1]) for n in cluster.nodes(READY)
                           for line in _metrics(n).splitlines() if line.startswith("push_messages_replayed_total "))
            record_measurement(f"continuity_sigkill_{transport}", {
                "clients_moved": len(affected), "published_202": len(accepted), "replayed": replayed,
                "lost": 0, "duplicates": 0})
            assert replayed > 0, "the moved clients got their missed messages from history"
        finally:
            swarm.close()


def _metrics(node: dict) -> str:
    import requests
    return requests.get(f"http://{node['admin']}/metrics", timeout=5).text
