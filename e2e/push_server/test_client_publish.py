"""Client publish (#28): an official socket.io client emits `publish` `{room, event, data}`
with an ack; when its token's `publish` claim allows the room, every member on every
node receives it once with an offset, and a recovering client gets it replayed (real
push-server processes on one real Redis, history on). A room the claim does not name is
refused with an error ack and reaches nobody; a flood is rate-limited."""

import time

import jwt
import pytest

from harness import NodeClients, contract

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
PUBLISH = contract()["socket"]["PUBLISH"]
HISTORY = {"HISTORY_MAX_MESSAGES": 100, "HISTORY_TTL_SECONDS": 60}


def token(sub: str, publish: list[str] | None = None) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 300, **({"publish": publish} if publish is not None else {})}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def client(processes, node, sub: str, rooms: list[str], name: str, publish: list[str] | None = None,
           **spec) -> NodeClients:
    c = NodeClients(processes, {"url": node.url, "auth": {"token": token(sub, publish)}, "rooms": rooms,
                                "transports": ["websocket"], **spec}, name=name)
    c.wait_ready()
    return c


def say(c: NodeClients, n: int, room: str, text) -> dict:
    c.send({"cmd": "emit", "event": PUBLISH, "data": {"room": room, "event": "say", "data": {"text": text}},
            "ack": True})
    return c.wait("ack", n, event=PUBLISH)[n - 1]["ack"]


@pytest.fixture
def nodes(redis_server, start_node):
    return [start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET, **HISTORY) for n in "ab"]


def test_an_allowed_publish_reaches_every_member_once_and_is_replayed_to_a_recovering_one(processes, nodes):
    members = [client(processes, node, f"m-{node.node_id}", ["chat.lobby"], f"member-{node.node_id}")
               for node in nodes]
    away = client(processes, nodes[1], "away", ["chat.lobby"], "away", reconnection=True)
    sender = client(processes, nodes[0], "ann", [], "sender", publish=["chat.*"])
    first = say(sender, 1, "chat.lobby", "hello")
    assert set(first) == {"offset"}, first
    for c in (*members, away):
        got = c.wait("event", event="say")[0]
        assert got["data"] == {"text": "hello"} and got["offset"] == first["offset"], got
    # The member `away` loses its connection (the server keeps its session), misses the
    # next message, comes back and recovers it.
    away.send({"cmd": "reconnection", "on": False})
    away.send({"cmd": "drop"})
    away.wait("disconnect")
    second = say(sender, 2, "chat.lobby", "while you were away")
    for c in members:
        assert [e["data"]["text"] for e in c.settle("say", 2)] == ["hello", "while you were away"]
    away.send({"cmd": "connect"})
    assert away.wait("connected", 2)[1]["recovered"] is True
    replayed = away.settle("say", 2)
    assert [(e["data"]["text"], e["offset"]) for e in replayed] == \
        [("hello", first["offset"]), ("while you were away", second["offset"])]
    assert sum(n.metric("PUBLISH_REQUESTS", source="client", result="accepted") for n in nodes) == 2


def test_a_room_the_claim_does_not_name_is_refused_and_reaches_nobody(processes, nodes):
    member = client(processes, nodes[1], "m", ["news", "chat.lobby"], "member")
    sender = client(processes, nodes[0], "ann", [], "sender", publish=["chat.*"])
    nobody = client(processes, nodes[0], "bob", [], "no-claim")
    refused = say(sender, 1, "news", "not for you")
    assert set(refused) == {"error"} and "not allowed to publish" in refused["error"], refused
    assert "not allowed" in say(nobody, 1, "chat.lobby", "no claim")["error"]
    assert "offset" in say(sender, 2, "chat.lobby", "allowed")
    # Published after the refused ones on the same path: had they gone out, they came first.
    assert [e["data"]["text"] for e in member.settle("say", 1)] == ["allowed"]
    assert nodes[0].metric("PUBLISH_REQUESTS", source="client", result="forbidden") == 2


def test_a_publish_flood_is_rate_limited_like_other_client_events(processes, redis_server, start_node):
    node = start_node(redis_server.url, JWT_SECRET=SECRET, EVENTS_PER_SECOND=2, EVENT_BURST=3, **HISTORY)
    sender = client(processes, node, "ann", [], "flood", publish=["chat.*"])
    for _ in range(10):
        sender.send({"cmd": "emit", "event": PUBLISH, "ack": True,
                     "data": {"room": "chat.lobby", "event": "say", "data": {"text": "flood"}}})
    acks = [line["ack"] for line in sender.wait("ack", 10, event=PUBLISH)]
    limited = [a for a in acks if "rate limited" in a.get("error", "")]
    assert 5 <= len(limited) <= 7 and len(acks) - len(limited) >= 3, acks
