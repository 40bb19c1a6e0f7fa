"""Scenario 1: polling-only clients spread over every node keep their sessions through
nginx (zero HTTP 400 "Session ID unknown" over many poll cycles), and the same check
fails when stickiness is switched off."""

from __future__ import annotations

import re

import pytest

from harness import NodeClients, wait_until
from harness.local import READY, LocalCluster, clients, manifest

# Client-address affinity needs several client addresses: all of 127/8 is loopback.
SOURCES = [f"127.0.0.{i}" for i in range(2, 26)]
CLIENTS = 24
CYCLES = 40
REQUEST = re.compile(r'"(?P<method>\w+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def socketio_statuses(cluster: LocalCluster) -> list[tuple[str, int]]:
    """(uri, status) of every socket.io request nginx answered."""
    out = []
    for line in cluster.access_log():
        m = REQUEST.search(line)
        if m and m["uri"].startswith("/socket.io/"):
            out.append((m["uri"], int(m["status"])))
    return out


def polling_swarm(processes, cluster: LocalCluster, cookie: bool) -> NodeClients:
    return clients(processes, {"url": cluster.endpoint, "count": CLIENTS, "transports": ["polling"],
                  "withCredentials": cookie, "sources": SOURCES})


@pytest.mark.parametrize("affinity", ["address", "cookie"])
def test_polling_clients_keep_their_sessions(tmp_path, processes, affinity):
    with LocalCluster(tmp_path, manifest("sticky", 3, 4, affinity)) as cluster, \
            polling_swarm(processes, cluster, affinity == "cookie") as swarm:
        swarm.wait_ready()
        nodes = cluster.nodes(READY)
        assert len(nodes) == 3, cluster.state()
        spread = {n["name"]: cluster.connections(n) for n in nodes}
        assert sum(spread.values()) == CLIENTS and all(spread.values()), f"not spread over all nodes: {spread}"

        # Each broadcast completes every client's pending long-poll: one poll cycle each.
        for k in range(CYCLES):
            assert cluster.publish({"event": "tick", "data": k, "broadcast": True}).status_code == 202
            wait_until(lambda: all(k in got for got in swarm.received("tick").values()), 15,
                       f"tick {k} at every client")

        statuses = socketio_statuses(cluster)
        polls = [s for uri, s in statuses if "sid=" in uri]
        assert len(polls) >= CLIENTS * CYCLES, f"only {len(polls)} polls: the test did not exercise polling"
        bad = [(uri, s) for uri, s in statuses if s == 400]
        assert bad == [], f"{len(bad)} 'Session ID unknown' answers, e.g. {bad[:3]}"
        assert swarm.of("disconnect") == []
        for i, got in swarm.received("tick").items():
            assert got == list(range(CYCLES)), f"client {i} got {got}"


def test_without_stickiness_sessions_break(tmp_path, processes):
    """The same clients with affinity switched off in nginx: the 400s the check above
    looks for do happen, so that check can fail."""
    spec = manifest("loose", 3, 4, "cookie")
    with LocalCluster(tmp_path, spec, extra_args=("--no-affinity",)) as cluster, \
            polling_swarm(processes, cluster, True) as swarm:
        def session_unknown():
            return [s for uri, s in socketio_statuses(cluster) if s == 400 and "sid=" in uri]
        wait_until(session_unknown, 30, "HTTP 400 on requests carrying a session id")
        wait_until(lambda: swarm.of("disconnect") or swarm.of("connect_error"), 30, "clients losing their session")
