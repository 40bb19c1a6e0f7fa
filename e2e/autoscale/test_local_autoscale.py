"""Connection autoscaling end to end, in local mode: real push-server processes
behind real nginx, official socket.io clients (socket.io-client 4.8).

Load past the target raises the recommendation at once and the replicas after
the scale-up window; removing load lowers the replicas only after the
scale-down window; the node drained is the least-loaded one, and its clients
reconnect to the others, spread over the drain window, none lost."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter

from harness import NodeClients, wait_until
from harness.local import DRAINING, LOCAL_MODE, READY, LocalCluster, clients, manifest, record_measurement

TARGET = 50
UP_WINDOW = 2
DOWN_WINDOW = 6
DRAIN_SECONDS = 4
STEP_PERIOD = LOCAL_MODE["STEP_INTERVAL_MS"] / 1000
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The step line: `<STEP_MESSAGE>: <verb>: ...` then its fields, `<STEP_RECOMMENDED>=3 ...`.
STEP = re.compile(re.escape(LOCAL_MODE["STEP_MESSAGE"]) + r": (?P<verb>[^:]+):")
RECOMMENDED = re.compile(r"\b" + re.escape(LOCAL_MODE["STEP_RECOMMENDED"]) + r"=(?P<n>\d+)")
VICTIMS = re.compile(r"\b" + re.escape(LOCAL_MODE["STEP_VICTIMS"]) + r"=\[(?P<names>[^\]]*)\]")
UNMEASURED = re.compile(r"\b" + re.escape(LOCAL_MODE["STEP_UNMEASURED"]) + r"=(?P<n>\d+)")


def autoscaled_manifest(replicas: int = 1, up_window: int = UP_WINDOW, down_window: int = DOWN_WINDOW) -> dict:
    spec = manifest("auto", replicas, DRAIN_SECONDS, "cookie")
    spec["spec"]["autoscaling"] = {
        "enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetConnectionsPerPod": TARGET,
        "scaleUpStabilizationSeconds": up_window, "scaleDownStabilizationSeconds": down_window,
        "maxScaleInStep": 1,
        # The scale-in's choice of the least-loaded node is judged here on the spread the
        # scale-out left; moving clients after a scale-out has its own test
        # (e2e/local/test_local_rebalance.py).
        "rebalance": {"enabled": False},
    }
    return spec


def steps(cluster: LocalCluster) -> list[dict]:
    """The operator's `autoscale step` log lines: verb, recommended, victims."""
    out = []
    for line in (cluster.workdir / "operator.log").read_text().splitlines():
        line = ANSI.sub("", line)
        m = STEP.search(line)
        if m:
            v = VICTIMS.search(line)
            victims = re.findall(r'"([^"]+)"', v["names"]) if v else []
            u = UNMEASURED.search(line)
            out.append({"verb": m["verb"], "recommended": int(RECOMMENDED.search(line)["n"]), "victims": victims,
                        "unmeasured": int(u["n"]) if u else 0})
    return out


def test_scale_on_connections_up_then_down_draining_the_least_loaded(tmp_path, processes):
    swarms: list[NodeClients] = []

    def swarm(count: int) -> NodeClients:
        s = clients(processes, {"url": cluster.endpoint, "count": count, "transports": ["websocket"], "withCredentials": True})
        swarms.append(s)
        s.wait_ready()
        return s

    with LocalCluster(tmp_path, autoscaled_manifest()) as cluster:
        try:
            wait_until(lambda: len(cluster.nodes(READY)) == 1, 30, "the one node ready")
            # The window is measured from a rise: the autoscaler must have seen the idle
            # node first (a first measurement of 120 has no history and scales at once).
            wait_until(lambda: any(s["recommended"] == 1 for s in steps(cluster)), 10,
                       "a first step measuring the idle node", interval=0.05)
            # --- up: 120 connections on one node, target 50 -> 3 nodes -------------
            stay = swarm(40)
            load_started = time.monotonic()
            leave = swarm(80)
            wait_until(lambda: any(s["recommended"] == 3 for s in steps(cluster)), 10,
                       "a recommendation of 3 in the operator log", interval=0.05)
            recommended_at = time.monotonic()
            assert len([n for n in cluster.nodes() if n["phase"] != DRAINING]) == 1, \
                "replicas rose with the recommendation, before the scale-up window passed"
            wait_until(lambda: any(s["verb"] == "scale up 1 -> 3" for s in steps(cluster)), UP_WINDOW + 5,
                       "scale up 1 -> 3 after the scale-up window", interval=0.05)
            scaled_up_after = time.monotonic() - recommended_at
            wait_until(lambda: len(cluster.nodes(READY)) == 3, 30, "3 ready nodes")
            ready_after = time.monotonic() - recommended_at
            # The window holds the rise until every recommendation in it agrees: about
            # UP_WINDOW after the first high one (give or take one step period).
            assert UP_WINDOW - STEP_PERIOD - 0.2 <= scaled_up_after <= UP_WINDOW + 3, \
                f"scaled up {scaled_up_after:.2f} s after the recommendation rose"

            # New clients spread over the 3 nodes; the first node keeps the 120.
            spread_clients = swarm(30)
            wait_until(lambda: sum(cluster.connections(n) for n in cluster.nodes(READY)) == 150, 10, "150 connections")

            # --- down: 80 leave -> 70 connections -> 2 nodes, after the window -----
            left_at = time.monotonic()
            leave.close()
            wait_until(lambda: sum(cluster.connections(n) for n in cluster.nodes(READY)) == 70, 10, "70 connections")
            loads = {n["name"]: cluster.connections(n) for n in cluster.nodes(READY)}
            assert len(loads) == 3, loads
            draining = wait_until(lambda: cluster.nodes(DRAINING), DOWN_WINDOW + 5, "a node draining")
            drained_after = time.monotonic() - left_at
            victim = draining[0]["name"]
            # The window counts from the last step that still saw the load: up to one
            # step period (1 s in local mode) before the load left.
            assert DOWN_WINDOW - STEP_PERIOD - 0.2 <= drained_after <= DOWN_WINDOW + 3, \
                f"scaled down {drained_after:.2f} s after the load left"
            assert loads[victim] == min(loads.values()), f"drained {victim} with {loads[victim]} of {loads}"
            down = [s for s in steps(cluster) if s["verb"].startswith("scale down")]
            assert down and down[0]["verb"] == "scale down 3 -> 2" and down[0]["victims"] == [victim], down

            # Its clients reconnect to the two others; nobody is lost or disconnected twice.
            wait_until(lambda: len(cluster.nodes()) == 2, DRAIN_SECONDS + 20, "the drained node gone")
            wait_until(lambda: sum(cluster.connections(n) for n in cluster.nodes(READY)) == 70, 20,
                       "all 70 clients connected to the 2 survivors")
            moved = [e for s in (stay, spread_clients) for e in s.of("disconnect")]
            per_client = Counter((id(s), e["i"]) for s in (stay, spread_clients) for e in s.of("disconnect"))
            assert len(moved) == loads[victim], f"{len(moved)} disconnects for {loads[victim]} clients on {victim}"
            assert not per_client or max(per_client.values()) == 1, per_client.most_common(3)
            first = min(e["t"] for e in moved)
            offsets = sorted((e["t"] - first) / 1000 for e in moved)
            busiest_second = max(Counter(int(o) for o in offsets).values())
            # A drain, not a storm: the moves are spread over the drain window.
            assert len(moved) >= 5, f"too few clients on the victim to judge the spread: {loads}"
            assert offsets[-1] >= 0.5 * DRAIN_SECONDS, f"all moved within {offsets[-1]:.2f} s: a storm"
            assert busiest_second <= 0.5 * len(moved), f"{busiest_second} of {len(moved)} moved in one second"
            # Still 2: 70 connections / 50 per node, the recommendation holds.
            assert len([n for n in cluster.nodes() if n["phase"] != DRAINING]) == 2
            assert all(s["recommended"] >= 2 for s in steps(cluster)[-1:]), steps(cluster)[-3:]

            record_measurement("autoscale_reaction", {
                "target_per_pod": TARGET, "up_window_s": UP_WINDOW, "down_window_s": DOWN_WINDOW,
                "recommendation_after_load_started_s": round(recommended_at - load_started, 2),
                "scale_up_after_recommendation_s": round(scaled_up_after, 2),
                "nodes_ready_after_recommendation_s": round(ready_after, 2),
                "scale_down_after_load_left_s": round(drained_after, 2),
                "victim_load": loads[victim], "loads": loads,
                "moved_clients": len(moved), "reconnect_span_s": round(offsets[-1], 2),
                "busiest_second": busiest_second,
            })
        finally:
            for s in swarms:
                s.close()


def test_a_node_that_does_not_answer_never_causes_a_scale_down(tmp_path, processes):
    """2 nodes at target; the busier one is frozen (SIGSTOP: its admin port accepts
    but never answers). Counted as zero the load left would ask for 1 node; counted
    at target, as the decision does on the way down, it holds 2."""
    down_window = 2
    with LocalCluster(tmp_path, autoscaled_manifest(replicas=2, up_window=0, down_window=down_window)) as cluster:
        wait_until(lambda: len(cluster.nodes(READY)) == 2, 30, "2 ready nodes")
        load = clients(processes, {"url": cluster.endpoint, "count": 2 * TARGET, "transports": ["websocket"],
                                   "withCredentials": True})
        frozen = None
        try:
            load.wait_ready()
            loads = {n["name"]: (n, cluster.connections(n)) for n in cluster.nodes(READY)}
            frozen, frozen_load = max(loads.values(), key=lambda v: v[1])
            assert frozen_load >= TARGET, loads
            os.kill(frozen["pid"], signal.SIGSTOP)
            wait_until(lambda: any(s["unmeasured"] == 1 for s in steps(cluster)), 10,
                       "a step with the frozen node unmeasured")
            # Observe the steps of a whole scale-down window and more: the decision must hold 2.
            deadline = time.monotonic() + down_window + 3 * STEP_PERIOD
            while time.monotonic() < deadline:
                active = [n for n in cluster.nodes() if n["phase"] != DRAINING]
                assert len(active) == 2, f"scaled down on missing data: {active}"
                time.sleep(0.2)
            assert not [s for s in steps(cluster) if s["verb"].startswith("scale down")], steps(cluster)
            held = [s for s in steps(cluster) if s["unmeasured"] == 1]
            assert held and all(s["recommended"] == 2 for s in held), held
        finally:
            if frozen:
                os.kill(frozen["pid"], signal.SIGCONT)
            load.close()
