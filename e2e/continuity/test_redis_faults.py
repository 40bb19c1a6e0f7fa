"""Message continuity through Redis faults (#13): Redis paused (SIGSTOP) for 10 s, and
Redis killed and restarted empty by local mode's supervisor, while a backend publishes
100 numbered messages a second. Every client ends with every message answered 202
exactly once, in order (a 503 means "not confirmed": such a message may still be
delivered once, never twice). A client reconnecting after the restart is told that its
continuity broke (the history went with Redis), not left to miss messages silently."""

from __future__ import annotations

import os
import signal
import time

from harness import contract, wait_until
from harness.continuity import RATE, ROOMS, Publisher, check_exactly_once_in_order, fence
from harness.local import READY, LocalCluster, clients, manifest, record_measurement

CLIENTS = 12
PAUSE_S = 10


def test_a_10s_redis_pause_loses_and_repeats_nothing(tmp_path, processes):
    with LocalCluster(tmp_path, manifest("pause", 3, 4, "cookie")) as cluster:
        swarm = clients(processes, {"url": cluster.endpoint, "withCredentials": True, "count": CLIENTS, "rooms": ROOMS})
        try:
            swarm.wait_ready()
            redis_pid = cluster.state()["redis"]["pid"]
            with Publisher(cluster.publish) as publisher:
                wait_until(lambda: len(publisher.accepted) > RATE, 10, "a second of messages")
                os.kill(redis_pid, signal.SIGSTOP)
                try:
                    time.sleep(PAUSE_S)  # the fault's duration, not a wait for readiness
                finally:
                    os.kill(redis_pid, signal.SIGCONT)
                resumed = len(publisher.accepted)
                wait_until(lambda: len(publisher.accepted) >= resumed + 2 * RATE, 20, "two seconds of messages after")
            fence(cluster, swarm)
            got = check_exactly_once_in_order(swarm, publisher)
            refused = set(publisher.refused)
            delivered_anyway = {n for g in got.values() for n in g if n in refused}
            record_measurement("continuity_redis_pause", {
                "pause_s": PAUSE_S, "published_202": len(publisher.accepted), "answered_503": len(refused),
                "503_delivered_once_anyway": len(delivered_anyway), "lost": 0, "duplicates": 0})
            assert refused, "publishes during the pause were answered 503"
            assert swarm.of("disconnect") == [], "a Redis pause disconnected clients"
        finally:
            swarm.close()


def test_after_a_redis_restart_nothing_202_is_lost_and_reconnecting_clients_are_told(tmp_path, processes):
    with LocalCluster(tmp_path, manifest("restart", 3, 4, "cookie")) as cluster:
        swarm = clients(processes, {"url": cluster.endpoint, "withCredentials": True, "count": CLIENTS, "rooms": ROOMS})
        try:
            swarm.wait_ready()
            redis_pid = cluster.state()["redis"]["pid"]
            with Publisher(cluster.publish) as publisher:
                wait_until(lambda: len(publisher.accepted) > RATE, 10, "a second of messages")
                os.kill(redis_pid, signal.SIGKILL)
                wait_until(lambda: cluster.state()["redis"]["pid"] != redis_pid, 15, "redis-server restarted")
                back = len(publisher.accepted)
                wait_until(lambda: len(publisher.accepted) >= back + 2 * RATE, 30, "two seconds of 202s after the restart")
            fence(cluster, swarm)
            check_exactly_once_in_order(swarm, publisher)
            assert swarm.of("disconnect") == [], "a Redis restart disconnected clients"

            # The history and the recovery sessions went with Redis: a client that now
            # reconnects (its node is killed) cannot recover, and is told so.
            nodes = cluster.nodes(READY)
            load = {n["name"]: cluster.connections(n) for n in nodes}
            victim = max(nodes, key=lambda n: load[n["name"]])
            killed_at = time.time() * 1000
            os.kill(victim["pid"], signal.SIGKILL)

            def told():
                again = [e for e in swarm.of("connected") if e["t"] >= killed_at]
                broken = swarm.events(contract()["socket"]["CONTINUITY_BROKEN"])
                return (again, broken) if len(again) >= load[victim["name"]] and len(broken) >= len(again) else None
            again, broken = wait_until(told, 30, "the moved clients told their continuity broke")
            assert all(e["recovered"] is False for e in again), again
            assert {e["i"] for e in broken} == {e["i"] for e in again}
            assert all(e["data"] == {"reason": "session-unknown", "rooms": None, "broadcast": True, "revoked": []}
               for e in broken), broken
            record_measurement("continuity_redis_restart", {
                "published_202": len(publisher.accepted), "lost": 0, "duplicates": 0,
                "reconnected_after": len(again), "told_continuity_broken": len(broken)})
        finally:
            swarm.close()
