"""Scenario 5: Redis is restarted (killed; the supervisor starts it again on the same
port). Cross-node fan-out resumes without restarting any push-server."""

from __future__ import annotations

import os
import signal
import time

from harness import wait_until
from harness.local import READY, LocalCluster, clients, manifest, record_measurement


def test_fanout_resumes_after_redis_restart(tmp_path, processes):
    with LocalCluster(tmp_path, manifest("redis", 3, 4, "cookie")) as cluster, \
            clients(processes, {"url": cluster.endpoint, "count": 12, "withCredentials": True}) as swarm:
        swarm.wait_ready()
        before = {n["name"]: n["pid"] for n in cluster.nodes(READY)}
        spread = {n["name"]: cluster.connections(n) for n in cluster.nodes(READY)}
        assert len(spread) == 3 and all(spread.values()), spread
        redis_pid = cluster.state()["redis"]["pid"]

        killed_at = time.monotonic()
        os.kill(redis_pid, signal.SIGKILL)
        wait_until(lambda: cluster.state()["redis"]["pid"] != redis_pid, 15, "redis-server restarted")

        # Publish through the API until every client has received a probe: all of them are
        # published after the restart, so the link is back. (Asking for the probe just
        # published, right after its 202, raced its delivery: every client received all 118
        # probes of a run that failed that way.)
        attempt = [0]

        def everyone_got_one():
            attempt[0] += 1
            cluster.publish({"event": "probe", "data": attempt[0], "broadcast": True})
            got = swarm.received("probe").values()
            return all(got)
        wait_until(everyone_got_one, 30, "a broadcast reaching clients on every node", interval=0.25)
        record_measurement("redis_restart_seconds_until_fanout", round(time.monotonic() - killed_at, 2))

        for k in range(10):
            assert cluster.publish({"event": "after", "data": k, "broadcast": True}).status_code == 202
        cluster.publish_redis({"event": "after", "data": "via-redis", "broadcast": True})
        wait_until(lambda: all("via-redis" in g for g in swarm.received("after").values()), 15, "messages after the restart")
        for i, got in swarm.received("after").items():
            # Exactly once each; order across nodes is not promised.
            assert sorted(map(str, got)) == sorted(map(str, [*range(10), "via-redis"])), f"client {i}: {got}"
        assert {n["name"]: n["pid"] for n in cluster.nodes(READY)} == before, "push-servers were restarted"
        assert swarm.of("disconnect") == [], "clients lost their connection"
