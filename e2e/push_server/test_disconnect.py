"""Disconnect by API (#28): `POST /api/v1/disconnect` on any node ends a user's sockets,
or one socket, on every node of the cluster (real push-server processes on one real
Redis, official socket.io clients): each is told the reason (`disconnect_reason`), then
disconnected by the server, and the official client does not reconnect by itself."""

import time

import jwt
import pytest
import requests

from harness import NodeClients, contract
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
EVENT = contract()["socket"]["DISCONNECT_REASON"]
# Long enough for the library's own reconnection (100-500 ms delays) to show if it tried.
RECONNECT_WINDOW_S = 1.5


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def order(node, body, bearer: str | None = API_TOKEN, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return requests.post(node.admin_url + contract()["paths"]["DISCONNECT"], json=body, headers=headers,
                         timeout=10, **kwargs)


def client(processes, node, sub: str, name: str) -> NodeClients:
    spec = {"url": node.url, "auth": {"token": token(sub)}, "transports": ["websocket"], "reconnection": True,
            "reconnectionDelay": 100, "reconnectionDelayMax": 500}
    return NodeClients(processes, spec, name=name)


@pytest.fixture
def nodes(redis_server, start_node):
    return [start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET) for n in "abc"]


def test_a_user_is_disconnected_on_every_node_told_why_and_stays_away(processes, nodes):
    banned = [client(processes, node, "u9", f"u9-on-{node.node_id}") for node in nodes]
    bystander = client(processes, nodes[0], "u10", "u10")
    for c in (*banned, bystander):
        c.wait_ready()
    asked_ms = time.time() * 1000
    answer = order(nodes[1], {"user": "u9", "reason": "banned by the moderators"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": True, "nodes": 3}, answer.json()
    for c in banned:
        told = c.wait("event", event=EVENT, timeout=5)[0]
        assert told["data"] == {"reason": "banned by the moderators"}, told
        gone = c.wait("disconnect", timeout=5)[0]
        assert gone["reason"] == "io server disconnect", gone
    latest_ms = max(c.of("disconnect")[0]["t"] for c in banned) - asked_ms
    print(f"\ndisconnect API -> a user's sockets on 3 nodes told and disconnected within {latest_ms:.0f} ms")
    assert latest_ms <= 1000, f"the last socket ended {latest_ms:.0f} ms after the request"
    # A window in which the library's own reconnection would show; not a readiness wait.
    time.sleep(RECONNECT_WINDOW_S)
    for c in banned:
        assert len(c.of("connected")) == 1, f"reconnected by itself: {c.of('connected')}"
    assert bystander.of("disconnect") == [] and bystander.events(EVENT) == []
    assert nodes[2].publish({"event": "still", "data": 1, "user": "u10"}, API_TOKEN).status_code == 202
    assert bystander.wait("event", event="still")[0]["data"] == 1
    assert sum(node.metric("DISCONNECTED_BY_API") for node in nodes) == 3


def test_one_socket_is_disconnected_by_its_id_from_another_node(processes, nodes):
    same_user = [client(processes, node, "u7", f"u7-on-{node.node_id}") for node in nodes[:2]]
    for c in same_user:
        c.wait_ready()
    sid = same_user[0].of("connected")[0]["id"]
    answer = order(nodes[2], {"sid": sid, "reason": "signed out on this device"})
    assert answer.status_code == 202 and answer.json()["nodes"] == 3, answer.text
    assert same_user[0].wait("event", event=EVENT)[0]["data"] == {"reason": "signed out on this device"}
    assert same_user[0].wait("disconnect")[0]["reason"] == "io server disconnect"
    assert nodes[0].publish({"event": "dm", "data": 2, "user": "u7"}, API_TOKEN).status_code == 202
    assert same_user[1].wait("event", event="dm")[0]["data"] == 2, "the user's other socket stays"
    assert same_user[1].of("disconnect") == [] and same_user[1].events(EVENT) == []
    assert nodes[0].metric("DISCONNECTED_BY_API") == 1 and nodes[1].metric("DISCONNECTED_BY_API") == 0


def test_a_single_node_without_redis_ends_its_own_sockets(processes, start_node):
    node = start_node(JWT_SECRET=SECRET)
    c = client(processes, node, "u3", "u3")
    c.wait_ready()
    answer = order(node, {"user": "u3", "reason": "maintenance"})
    assert answer.status_code == 202 and answer.json() == {"accepted": True, "nodes": 1, "sockets": 1}, answer.text
    assert c.wait("disconnect")[0]["reason"] == "io server disconnect"


@pytest.mark.parametrize("body, bearer, status, message", [
    ({"user": "u1", "reason": "r"}, None, 401, "bearer token"),
    ({"user": "u1", "reason": "r"}, "wrong", 401, "bearer token"),
    ({"user": "u1", "sid": "x", "reason": "r"}, API_TOKEN, 400, "exactly one of"),
    ({"reason": "r"}, API_TOKEN, 400, "exactly one of"),
    ({"user": "u1"}, API_TOKEN, 400, "reason"),
    ({"user": "u1", "reason": "x" * 201}, API_TOKEN, 400, "1 to 200 characters"),
    ({"user": "u1", "reason": "r", "room": "news"}, API_TOKEN, 400, "unknown field"),
    ({"user": "u" * 5000, "reason": "r"}, API_TOKEN, 413, "4096 bytes"),
])
def test_bad_orders_are_refused_saying_why_and_end_nothing(processes, nodes, body, bearer, status, message):
    c = client(processes, nodes[0], "u1", "u1")
    c.wait_ready()
    answer = order(nodes[0], body, bearer)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"], answer.json()
    assert sum(node.metric("DISCONNECTED_BY_API") for node in nodes) == 0
    assert c.of("disconnect") == []
