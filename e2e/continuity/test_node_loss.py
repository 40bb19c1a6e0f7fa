"""Message continuity through the loss of a node (#13): while a backend publishes 100
numbered messages a second to a room and to a user, the busiest node is SIGKILLed. Its
clients (the official socket.io client, unchanged, over WebSocket and long-polling)
reconnect through nginx to another node, send their `{pid, offset}`, and get
`socket.recovered === true` and every message they missed; every client ends with every
message exactly once and in order."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness import contract, wait_until
from harness.continuity import RATE, ROOMS, Publisher, check_exactly_once_in_order, fence, metric_total
from harness.local import READY, LocalCluster, clients, manifest, record_measurement

CLIENTS = 12


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_clients_of_a_sigkilled_node_recover_every_message_once_in_order(tmp_path, processes, transport):
    with LocalCluster(tmp_path, manifest("continuity", 3, 4, "cookie")) as cluster:
        swarm = clients(processes, {"url": cluster.endpoint, "withCredentials": True, "count": CLIENTS,
                                    "transports": [transport], "rooms": ROOMS})
        try:
            swarm.wait_ready()
            nodes = cluster.nodes(READY)
            load = {n["name"]: cluster.connections(n) for n in nodes}
            victim = max(nodes, key=lambda n: load[n["name"]])
            assert load[victim["name"]] > 0, load
            with Publisher(cluster.publish) as publisher:
                wait_until(lambda: len(publisher.accepted) > RATE, 10, "a second of messages")
                killed_at = time.time() * 1000
                os.kill(victim["pid"], signal.SIGKILL)

                def moved():
                    gone = {e["i"] for e in swarm.of("disconnect") if e["t"] >= killed_at}
                    back = {e["i"] for e in swarm.of("connected") if e["t"] >= killed_at}
                    return gone if len(gone) >= load[victim["name"]] and gone <= back else None
                affected = wait_until(moved, 30, f"the {load[victim['name']]} clients of {victim['name']} back")
                more = len(publisher.accepted) + 2 * RATE
                wait_until(lambda: len(publisher.accepted) >= more, 10, "two more seconds of messages")
            fence(cluster, swarm)

            reconnects = [e for e in swarm.of("connected") if e["t"] >= killed_at]
            assert {e["i"] for e in reconnects} == affected, "only the victim's clients reconnected"
            assert all(e["recovered"] is True for e in reconnects), reconnects
            check_exactly_once_in_order(swarm, publisher)
            replayed = sum(metric_total(n, contract()["metrics"]["MESSAGES_REPLAYED"]) for n in cluster.nodes(READY))
            record_measurement(f"continuity_sigkill_{transport}", {
                "clients_moved": len(affected), "published_202": len(publisher.accepted),
                "replayed_from_history": replayed, "lost": 0, "duplicates": 0})
            assert replayed > 0, "the moved clients got what they missed from history"
        finally:
            swarm.close()
