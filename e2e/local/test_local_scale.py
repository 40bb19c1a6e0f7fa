"""Scenario 4: scale 3 -> 5 -> 2 by editing the manifest while clients are connected.
No client is disconnected more than once, and the disconnects of scale-in are spread
over the drain window instead of arriving as one storm."""

from __future__ import annotations

import copy
import time
from collections import Counter

import yaml

from harness import wait_until
from harness.local import READY, LocalCluster, clients, manifest, record_measurement

DRAIN_SECONDS = 4


def test_scale_out_and_in_by_editing_the_manifest(tmp_path, processes):
    with LocalCluster(tmp_path, manifest("scale", 3, DRAIN_SECONDS, "cookie")) as cluster:
        common = {"url": cluster.endpoint, "withCredentials": True}
        # Long-polling clients too: with cookie affinity their sessions stay on a draining
        # node until the drain moves them, like the WebSockets.
        first = clients(processes, {**common, "count": 30, "transports": ["polling"]})
        second = None
        try:
            first.wait_ready()
            cluster.set_replicas(5)
            wait_until(lambda: len(cluster.nodes(READY)) == 5, 60, "5 ready nodes after the edit")
            # Clients arriving after scale-out land on the new nodes too.
            second = clients(processes, {**common, "count": 30, "transports": ["websocket"]})
            second.wait_ready()
            swarms = (first, second)
            spread = {n["name"]: cluster.connections(n) for n in cluster.nodes(READY)}
            assert len(spread) == 5 and all(spread.values()), f"not every node has clients: {spread}"

            # A bad edit is reported and changes nothing.
            bad = copy.deepcopy(cluster.spec)
            bad["spec"]["redis"] = {"managed": {}, "external": {"url": "redis://elsewhere:6379"}}
            cluster.manifest_path.write_text(yaml.safe_dump(bad))
            wait_until(lambda: "set exactly one of managed or external" in cluster.log_tail(), 10, "the bad edit reported")
            assert len(cluster.nodes(READY)) == 5

            scale_in_at = time.time() * 1000
            cluster.set_replicas(2)
            wait_until(lambda: len(cluster.nodes()) == 2, DRAIN_SECONDS + 30, "the 3 drained nodes gone")
            survivors = {n["name"] for n in cluster.nodes()}
            moved = sum(count for name, count in spread.items() if name not in survivors)

            def disconnects():
                return [(id(s), e["i"], e["t"]) for s in swarms for e in s.of("disconnect") if e["t"] >= scale_in_at]
            wait_until(lambda: len(disconnects()) >= moved, 10, f"{moved} clients moved off the drained nodes")
            # Every moved client is connected again (to a survivor).
            total = lambda: sum(cluster.connections(n) for n in cluster.nodes(READY))  # noqa: E731
            wait_until(lambda: total() == 60, 20, "all 60 clients connected to the 2 survivors")

            per_client = Counter((s, i) for s, i, _ in disconnects())
            assert max(per_client.values()) == 1, f"clients disconnected more than once: {per_client.most_common(3)}"
            assert len(per_client) == moved, f"{len(per_client)} disconnects for {moved} clients on drained nodes"
            offsets = sorted((t - scale_in_at) / 1000 for _, _, t in disconnects())
            span = offsets[-1] - offsets[0]
            busiest_second = max(Counter(int(o) for o in offsets).values())
            record_measurement("scale_in_disconnects", {"clients": len(offsets), "drain_seconds": DRAIN_SECONDS,
                                                        "first_s": round(offsets[0], 2), "last_s": round(offsets[-1], 2),
                                                        "span_s": round(span, 2), "busiest_second": busiest_second})
            assert span >= 0.5 * DRAIN_SECONDS, f"disconnects within {span:.2f} s: a storm, not a drain"
            assert offsets[-1] <= DRAIN_SECONDS + 3, f"last disconnect {offsets[-1]:.2f} s after the edit"
            assert busiest_second <= 0.5 * len(offsets), f"{busiest_second} of {len(offsets)} in one second"

            cluster.publish({"event": "after", "data": 1, "broadcast": True})
            for swarm in swarms:
                wait_until(lambda: all(g == [1] for g in swarm.received("after").values()), 15, "broadcast after scale-in")
        finally:
            first.close()
            if second:
                second.close()
