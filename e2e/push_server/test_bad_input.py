"""Bad input gets a clear error and disturbs nothing else: the publish API's 400/401/413,
oversized WebSocket and polling messages, malformed packets, unknown namespaces."""

import json

import pytest
import requests
import websocket

from harness import NodeClients, contract, wait_until
from harness.push_suite import API_TOKEN

LIMIT = 4000


@pytest.fixture
def node(start_node):
    return start_node(MAX_PAYLOAD_BYTES=LIMIT)


@pytest.mark.parametrize("case,token,body,status,fragment", [
    ("no token", None, {"event": "e", "room": "r"}, 401, "bearer token"),
    ("wrong token", "nope", {"event": "e", "room": "r"}, 401, "bearer token"),
    ("not json", API_TOKEN, b"{nope", 400, "not valid JSON"),
    ("missing event", API_TOKEN, {"room": "r"}, 400, "missing field `event`"),
    ("two targets", API_TOKEN, {"event": "e", "room": "r", "user": "u"}, 400, "exactly one of"),
    ("no target", API_TOKEN, {"event": "e"}, 400, "exactly one of"),
    ("reserved event", API_TOKEN, {"event": "connect", "room": "r"}, 400, "reserved"),
    ("unknown namespace", API_TOKEN, {"event": "e", "room": "r", "namespace": "/nope"}, 400, "namespace"),
    ("over the limit", API_TOKEN, {"event": "e", "room": "r", "data": "x" * LIMIT}, 413, "larger than"),
])
def test_publish_api_refuses_bad_requests(node, case, token, body, status, fragment):
    raw = isinstance(body, bytes)
    response = node.publish(body, token, raw=raw, headers={"Content-Type": "application/json"} if raw else None)
    assert response.status_code == status, (case, response.text)
    assert fragment in response.json()["error"], (case, response.text)


def test_publish_outcomes_are_counted(node):
    node.publish({"event": "e", "room": "r"}, "nope")
    node.publish({"room": "r"}, API_TOKEN)
    assert node.publish({"event": "e", "room": "r"}, API_TOKEN).status_code == 202
    assert node.metric("PUBLISH_REQUESTS", source="http", result="unauthorized") == 1
    assert node.metric("PUBLISH_REQUESTS", source="http", result="invalid") == 1
    assert node.metric("PUBLISH_REQUESTS", source="http", result="accepted") == 1


def test_publish_api_is_off_without_a_token(processes):
    from harness import PushServer

    node = PushServer(processes, env={}).start()
    response = node.publish({"event": "e", "room": "r"}, "anything")
    assert response.status_code == 404
    assert "disabled" in response.json()["error"]


def test_oversized_websocket_message_closes_only_that_connection(processes, node):
    big = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["r"]}, name="big")
    other = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["r"]}, name="other")
    big.wait_ready()
    other.wait_ready()
    big.send({"cmd": "emit", "event": "subscribe", "data": {"rooms": ["x" * (LIMIT * 2)]}})
    [gone] = big.wait("disconnect")
    assert gone["reason"] in ("transport close", "transport error"), gone
    wait_until(lambda: node.connections() == 1, 10, "only the offender removed")
    assert node.publish({"event": "after", "data": 1, "room": "r"}, API_TOKEN).status_code == 202
    assert [e["data"] for e in other.settle("after", 1)] == [1]
    assert not other.of("disconnect")
    assert "transport or protocol error" in node.log()


def test_oversized_polling_body_is_refused(node):
    base = node.url + contract()["paths"]["SOCKET_IO"]
    handshake = requests.get(base, params={"EIO": "4", "transport": "polling"}, timeout=5)
    sid = json.loads(handshake.text[1:])["sid"]
    response = requests.post(base, params={"EIO": "4", "transport": "polling", "sid": sid},
                             data="4" + "x" * (LIMIT * 2), timeout=5)
    assert response.status_code == 413, response.status_code
    # That session is closed; the node keeps serving.
    after = requests.get(base, params={"EIO": "4", "transport": "polling", "sid": sid}, timeout=5)
    assert after.status_code == 400 and "Session ID unknown" in after.text
    assert node.readyz() == 200


def _raw_ws(node):
    url = node.url.replace("http", "ws") + contract()["paths"]["SOCKET_IO"] + "?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=5)
    assert ws.recv().startswith("0{")  # engine.io open
    return ws


def test_unknown_namespace_gets_connect_error_and_others_are_fine(processes, node):
    watcher = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["r"]})
    watcher.wait_ready()
    ws = _raw_ws(node)
    ws.send("40/nope,")
    seen = []
    while not (seen and seen[-1].startswith("44/")):
        seen.append(ws.recv())
        assert len(seen) < 5, seen
    assert seen[-1].startswith("44/nope,"), seen
    assert "Invalid namespace" in seen[-1], seen
    ws.close()
    assert node.publish({"event": "ok", "data": 1, "room": "r"}, API_TOKEN).status_code == 202
    assert len(watcher.settle("ok", 1)) == 1


@pytest.mark.parametrize("garbage", ["42[bad json", "9", "4", "40{not-json", "\x00\x01"])
def test_malformed_packets_close_only_the_sender(processes, node, garbage):
    watcher = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["r"]})
    watcher.wait_ready()
    ws = _raw_ws(node)
    ws.send(garbage)
    # The server drops the connection (or ignores the packet); it never crashes.
    try:
        ws.recv()
    except (websocket.WebSocketException, OSError):
        pass
    ws.close()
    assert node.proc.poll() is None
    assert node.readyz() == 200
    assert node.publish({"event": "ok", "data": 1, "room": "r"}, API_TOKEN).status_code == 202
    assert len(watcher.settle("ok", 1)) == 1


def test_bad_redis_channel_messages_are_counted_and_dropped(processes, redis_server, cluster):
    a, b = cluster
    client = NodeClients(processes, {"url": a.url, "transports": ["websocket"], "rooms": ["r"]})
    client.wait_ready()
    channel = contract()["defaults"]["REDIS_CHANNEL"]
    # Every node receives the channel; one at a time holds its lease and takes what
    # arrives (appends it to the fan-out log, or refuses and counts it).
    wait_until(lambda: redis_server.cli("PUBSUB", "NUMSUB", channel).split()[-1] == "2", 5,
               "both nodes receiving the publish channel")
    wait_until(lambda: redis_server.cli("GET", f"{channel}:owner"), 5, "a node holding the publish channel")
    for garbage in ["not json", '{"room":"r"}', '{"event":"e","room":"r","user":"u"}', "[1,2]"]:
        assert redis_server.publish(channel, garbage) == 2
    assert redis_server.publish(channel, json.dumps({"event": "ok", "data": 1, "room": "r"})) == 2
    assert [e["data"] for e in client.settle("ok", 1)] == [1]
    invalid = lambda: sum(n.metric("PUBLISH_REQUESTS", source="redis", result="invalid") for n in (a, b))
    wait_until(lambda: invalid() == 4, 5, "the holder counted the bad messages")
    for node in (a, b):
        assert node.readyz() == 200


def test_room_limits_per_request_and_per_connection(node, py_clients):
    client = py_clients()
    assert client.connect(node.url)
    assert "at most 100 rooms" in client.subscribe(*[f"r{i}" for i in range(101)])["error"]
    joined = 0
    for batch in range(11):
        ack = client.subscribe(*[f"room-{batch}-{i}" for i in range(100)])
        joined += len(ack["joined"])
        if batch == 10:
            assert {r["reason"] for r in ack["refused"]} == {"this connection is in too many rooms"}
    assert 990 <= joined <= 1000, joined
    assert node.readyz() == 200


def test_oversized_request_head_gets_431_and_the_node_keeps_serving(node):
    """The client port caps a request head at 8 KiB (like nginx's default header buffers), so
    one connection cannot make the node hold hundreds of KiB of headers."""
    big = {"Cookie": "c=" + "x" * 16_384}
    response = requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling", headers=big, timeout=5)
    assert response.status_code == 431, response.text
    # A normal-sized head (a 6 KiB cookie included) still opens a session.
    ok = requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling",
                      headers={"Cookie": "c=" + "x" * 6_000}, timeout=5)
    assert ok.status_code == 200 and ok.text.startswith("0{"), ok.text
