"""Cross-node fan-out with the official JS client: every transport, every target,
HTTP and Redis-channel publishes, exactly once per client."""

import json

import pytest

from harness import NodeClients, contract, fanout_mode, wait_until
from harness.push_suite import API_TOKEN

TRANSPORTS = {
    "websocket": {"transports": ["websocket"]},
    "polling": {"transports": ["polling"]},
    "polling-then-upgrade": {},
}


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_room_publish_on_b_reaches_client_on_a_exactly_once(processes, cluster, mode):
    a, b = cluster
    client = NodeClients(processes, {"url": a.url, "rooms": ["sports"], **TRANSPORTS[mode]})
    client.wait_ready()
    if mode == "polling-then-upgrade":
        client.wait("upgrade")
        assert client.of("open")[0]["transport"] == "polling"
        assert client.of("upgrade")[0]["transport"] == "websocket"
    expected_transport = "polling" if mode == "polling" else "websocket"
    assert a.metric("CONNECTIONS", transport=expected_transport) == 1
    # By interest a receives namespace broadcasts and "sports", b broadcasts only; with
    # the log neither subscribes to a room channel.
    channels = {"log": (0, 0), "interest": (2, 1)}[fanout_mode()]
    assert (a.metric("ROOM_CHANNELS"), b.metric("ROOM_CHANNELS")) == channels

    response = b.publish({"event": "score", "data": {"n": 1}, "room": "sports"}, API_TOKEN)
    assert response.status_code == 202, response.text
    assert response.json()["fanout"] == "cluster"

    events = client.settle("score", 1)
    assert [e["data"] for e in events] == [{"n": 1}]
    assert a.metric("MESSAGES_DELIVERED") == 1
    assert b.metric("MESSAGES_DELIVERED") == 0
    # Every node that receives the message observes publish→delivery latency against the
    # origin's stamp: with the log every node, by interest only a (b has no member).
    latency = contract()["metrics"]["PUBLISH_LATENCY"]
    received = {"log": 1, "interest": 0}[fanout_mode()]
    for node, count_wanted in ((a, 1), (b, received)):
        [count] = [v for n, _, v in node.metrics() if n == f"{latency}_count"]
        assert count == count_wanted, node.node_id


def test_every_target_via_http_and_redis_is_delivered_once_per_client(processes, cluster, redis_server):
    a, b = cluster
    channel = contract()["defaults"]["REDIS_CHANNEL"]
    # Per node: one client in room "news", one not; user u1 is connected on both nodes.
    # JWT off: the user room is joined by name for this test (open development mode).
    clients = {}
    for node in (a, b):
        clients[(node.node_id, "news")] = NodeClients(processes, {"url": node.url, "rooms": ["news"]})
        clients[(node.node_id, "user")] = NodeClients(processes, {"url": node.url, "rooms": ["user:u1"]})
        clients[(node.node_id, "other")] = NodeClients(processes, {"url": node.url, "rooms": ["other"]})
    for c in clients.values():
        c.wait_ready()
    wait_until(lambda: redis_server.cli("PUBSUB", "NUMSUB", channel).split()[-1] == "2", 5,
               "both nodes receiving the publish channel")
    wait_until(lambda: redis_server.cli("GET", f"{channel}:owner"), 5, "a node holding the publish channel")

    sends = [
        ("http-a", lambda body: a.publish(body, API_TOKEN).status_code),
        ("http-b", lambda body: b.publish(body, API_TOKEN).status_code),
        ("redis", lambda body: redis_server.publish(channel, json.dumps(body))),
    ]
    for source, send in sends:
        # 202 from the API; 2 receivers (both nodes; the lease holder takes it) from PUBLISH.
        assert send({"event": "room", "data": source, "room": "news"}) in (202, 2)
        assert send({"event": "user", "data": source, "user": "u1"}) in (202, 2)
        assert send({"event": "all", "data": source, "broadcast": True}) in (202, 2)

    sources = sorted(s for s, _ in sends)
    for (node, kind), c in clients.items():
        assert sorted(e["data"] for e in c.settle("all", 3)) == sources, (node, kind)
        room = sorted(e["data"] for e in c.events("room"))
        user = sorted(e["data"] for e in c.events("user"))
        assert room == (sources if kind == "news" else []), (node, kind)
        assert user == (sources if kind == "user" else []), (node, kind)
    # Redis-channel messages are counted by the node that took them (the holder), once.
    assert sum(n.metric("PUBLISH_REQUESTS", source="redis", result="accepted") for n in (a, b)) == 3


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]],
                         ids=["websocket", "polling", "polling-then-upgrade"])
def test_python_socketio_client_on_a_gets_publish_from_b_once(cluster, py_clients, transports):
    a, b = cluster
    client = py_clients()
    assert client.connect(a.url, transports=transports), client.error_message()
    assert client.subscribe("py")["joined"] == ["py"]
    if transports == ["polling", "websocket"]:
        wait_until(lambda: client.sio.transport() == "websocket", 10, "the upgrade to websocket")
    assert b.publish({"event": "m", "data": "x", "room": "py"}, API_TOKEN).status_code == 202
    assert b.publish({"event": "end", "room": "py"}, API_TOKEN).status_code == 202
    wait_until(lambda: client.received("end"), 10, "the sentinel")
    assert client.received("m") == ["x"]


def test_delivery_counts_follow_subscribe_unsubscribe_and_disconnect(processes, start_node):
    """The count a delivery reports (202 body on a single node, the delivered metric) is kept
    beside the room map instead of walking the room: it must follow every membership change."""
    node = start_node()  # no Redis: the 202 body carries the local delivery count
    news = NodeClients(processes, {"url": node.url, "count": 3, "rooms": ["news"], "transports": ["websocket"]})
    other = NodeClients(processes, {"url": node.url, "rooms": ["other"], "transports": ["websocket"]})
    news.wait_ready()
    other.wait_ready()

    def delivered(body):
        response = node.publish(body, API_TOKEN)
        assert response.status_code == 202, response.text
        return response.json()["delivered"]

    # Subscribing again to a room the socket is in must not count it twice.
    news.send({"cmd": "emit", "i": 0, "event": "subscribe", "data": {"rooms": ["news", "news"]}, "ack": True})
    assert news.wait("ack", 1)[0]["ack"]["joined"] == ["news", "news"]
    assert delivered({"event": "m", "data": 1, "room": "news"}) == 3
    assert delivered({"event": "m", "data": 2, "broadcast": True}) == 4
    assert delivered({"event": "m", "data": 3, "room": "nobody"}) == 0

    news.send({"cmd": "emit", "i": 1, "event": "unsubscribe", "data": {"rooms": ["news", "never-joined"]}, "ack": True})
    news.wait("ack", 2)
    assert delivered({"event": "m", "data": 4, "room": "news"}) == 2

    other.close()
    wait_until(lambda: node.connections() == 3, 10, "the closed client to leave")
    assert delivered({"event": "m", "data": 5, "broadcast": True}) == 3
    assert delivered({"event": "m", "data": 6, "room": "other"}) == 0

    # What the clients saw agrees with the counts, and so does the metric.
    seen = sorted(e["data"] for e in news.settle("m", 11))
    assert seen == [1, 1, 1, 2, 2, 2, 4, 4, 5, 5, 5], seen
    assert node.metric("MESSAGES_DELIVERED") == 3 + 4 + 2 + 3
