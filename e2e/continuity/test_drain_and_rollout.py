"""Message continuity through a drain (scale-in) and a rolling replacement in local mode
(#13): while a backend publishes 100 numbered messages a second, the manifest is edited
(3 → 2 replicas; a changed `env` that replaces every node; a switch of
`spec.delivery.fanout` between `log` and `interest`, which replaces every node and has
nodes of both modes serve side by side meanwhile). The drained nodes move
their clients off over the drain window; each comes back on another node with
`socket.recovered === true`, and every client ends with every message once, in order."""

from __future__ import annotations

import time

import pytest

from harness import fanout_mode, wait_until
from harness.continuity import RATE, ROOMS, Publisher, check_exactly_once_in_order, fence
from harness.local import READY, LocalCluster, clients, manifest, record_measurement

CLIENTS = 12
DRAIN_SECONDS = 3


def edit(cluster: LocalCluster, change: str) -> None:
    if change == "scale-in":
        cluster.set_replicas(2)
        return
    # Any change of the nodes' configuration replaces them, one surge at a time.
    if change == "rollout":
        cluster.spec["spec"]["env"] = [{"name": "PUSH_LOG", "value": "info,push_server=debug"}]
    else:  # the other delivery mode: new nodes of it serve beside the old ones
        other = "interest" if fanout_mode() == "log" else "log"
        cluster.spec["spec"]["delivery"] = {"fanout": other}
    cluster.write_manifest()


REPLACES_EVERY_NODE = ("rollout", "fanout-switch")


@pytest.mark.parametrize("change", ["scale-in", *REPLACES_EVERY_NODE])
def test_moved_clients_recover_every_message_once_in_order(tmp_path, processes, change):
    with LocalCluster(tmp_path, manifest(change, 3, DRAIN_SECONDS, "cookie")) as cluster:
        swarm = clients(processes, {"url": cluster.endpoint, "withCredentials": True, "count": CLIENTS, "rooms": ROOMS})
        try:
            swarm.wait_ready()
            before = {n["name"] for n in cluster.nodes(READY)}
            with Publisher(cluster.publish) as publisher:
                wait_until(lambda: len(publisher.accepted) > RATE, 10, "a second of messages")
                edited_at = time.time() * 1000
                edit(cluster, change)

                def settled():
                    nodes = cluster.nodes()
                    if any(n["phase"] != READY for n in nodes):
                        return None
                    names = {n["name"] for n in nodes}
                    if change == "scale-in" and len(nodes) != 2 or change in REPLACES_EVERY_NODE and names & before:
                        return None
                    gone = {e["i"] for e in swarm.of("disconnect") if e["t"] >= edited_at}
                    back = {e["i"] for e in swarm.of("connected") if e["t"] >= edited_at}
                    return gone if gone and gone <= back else None
                moved = wait_until(settled, DRAIN_SECONDS + 60, f"the {change} done and its clients back")
                more = len(publisher.accepted) + 2 * RATE
                wait_until(lambda: len(publisher.accepted) >= more, 10, "two more seconds of messages")
            fence(cluster, swarm)

            reconnects = [e for e in swarm.of("connected") if e["t"] >= edited_at]
            assert all(e["recovered"] is True for e in reconnects), reconnects
            if change in REPLACES_EVERY_NODE:
                assert moved == set(range(CLIENTS)), "every client was on a replaced node"
            check_exactly_once_in_order(swarm, publisher)
            record_measurement(f"continuity_{change}", {
                "clients_moved": len(moved), "reconnects": len(reconnects),
                "published_202": len(publisher.accepted), "lost": 0, "duplicates": 0})
        finally:
            swarm.close()
