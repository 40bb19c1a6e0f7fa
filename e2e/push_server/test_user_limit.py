"""Connections per user across the cluster (#28, `PUSH_MAX_CONNECTIONS_PER_USER`, set by
`spec.admission.maxConnectionsPerUser`): real push-server processes on one real Redis,
official socket.io clients with JWTs. A user at the limit is refused on any node with a
clear error, other users are not; a socket that leaves gives its slot back; a node that
dies stops counting once its heartbeat is stale; a single node counts its own sockets."""

import signal
import time

import jwt
import pytest

from harness import NodeClients, contract, wait_until
from harness.procs import Processes

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
LIMIT = 3
REFUSED = f"too many connections for this user: the cluster allows {LIMIT} at once"
# user_limit::HOLDER_TIMEOUT (15 s) after the node's last heartbeat (every 5 s).
DEAD_NODE_BOUND_S = 15 + 5 + 2


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def connect(processes, node, sub: str, name: str) -> NodeClients:
    return NodeClients(processes, {"url": node.url, "auth": {"token": token(sub)}, "transports": ["websocket"]},
                       name=name)


def refused(client: NodeClients) -> str:
    return client.wait("connect_error")[0]["message"]


def admitted_again(processes, node, sub: str, bound_s: float) -> float:
    """Connects `sub` to `node` again and again until one is admitted; the seconds that
    took. Every attempt that is not admitted must be refused for the limit."""
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        c = connect(processes, node, sub, f"{sub}-again-{attempt}")
        wait_until(lambda: c.of("connected") or c.of("connect_error"), 10, "connected or refused")
        if c.of("connected"):
            return time.monotonic() - started
        assert refused(c) == REFUSED
        c.close()
        assert time.monotonic() - started < bound_s, f"still refused after {bound_s} s"
        time.sleep(0.2)  # the pace of the attempts, not a readiness wait


@pytest.fixture
def nodes(redis_server, start_node):
    return [start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET, MAX_CONNECTIONS_PER_USER=LIMIT)
            for n in "abc"]


def test_a_user_at_the_limit_is_refused_on_any_node_and_a_slot_comes_back(processes, nodes):
    held = [connect(processes, node, "u1", f"u1-on-{node.node_id}") for node in nodes]
    for c in held:
        c.wait_ready()
    over = connect(processes, nodes[0], "u1", "u1-over")
    assert refused(over) == REFUSED
    assert over.of("connected") == []
    other = connect(processes, nodes[0], "u2", "u2")
    other.wait_ready()
    assert nodes[0].metric("USER_LIMIT_REFUSALS") == 1
    # One of u1's sockets leaves: its slot is given back, a new one gets in.
    held[1].close()
    took = admitted_again(processes, nodes[2], "u1", 5)
    print(f"\nper-user limit: a slot given back by a disconnect was taken again after {took:.2f} s")


def test_a_dead_node_stops_counting_once_its_heartbeat_is_stale(processes, nodes):
    held = [connect(processes, node, "u5", f"u5-on-{node.node_id}") for node in nodes]
    for c in held:
        c.wait_ready()
    assert refused(connect(processes, nodes[0], "u5", "u5-over")) == REFUSED
    Processes.signal(nodes[2].proc, signal.SIGKILL)
    took = admitted_again(processes, nodes[0], "u5", DEAD_NODE_BOUND_S)
    print(f"\nper-user limit: a SIGKILLed node's sockets stopped counting {took:.1f} s after the kill")
    assert took >= 5, "admitted at once: the dead node's sockets were never counted"


def test_a_single_node_without_redis_counts_its_own_sockets(processes, start_node):
    node = start_node(JWT_SECRET=SECRET, MAX_CONNECTIONS_PER_USER=LIMIT)
    held = NodeClients(processes, {"url": node.url, "auth": {"token": token("solo")}, "count": LIMIT,
                                   "transports": ["websocket"]}, name="solo")
    held.wait_ready()
    assert refused(connect(processes, node, "solo", "solo-over")) == REFUSED
    assert node.metric("USER_LIMIT_REFUSALS") == 1


def test_the_limit_is_off_by_default(processes, redis_server, start_node):
    node = start_node(redis_server.url, JWT_SECRET=SECRET)
    many = NodeClients(processes, {"url": node.url, "auth": {"token": token("busy")}, "count": LIMIT + 2,
                                   "transports": ["websocket"]}, name="busy")
    many.wait_ready()
    assert many.of("connect_error") == []
    assert contract()["env"]["MAX_CONNECTIONS_PER_USER"] == "PUSH_MAX_CONNECTIONS_PER_USER"
