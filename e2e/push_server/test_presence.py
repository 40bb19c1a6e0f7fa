"""Presence (#28): `GET /api/v1/rooms/{room}/presence` on any node answers, cluster-wide,
how many sockets and which users are in a room (users sorted and paginated), and
`GET /api/v1/users/{user}/presence` how many sockets a user has — real push-server
processes on one real Redis, official socket.io clients. A node that cannot answer (here
SIGSTOPped) makes the reply partial within its deadline, never a wrong total given as
whole."""

import os
import signal
import time
from urllib.parse import quote

import jwt
import pytest
import requests

from harness import NodeClients, contract
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
PATHS = contract()["paths"]
# The presence module's deadline (presence::DEADLINE, 1 s) plus the way there and back.
PARTIAL_BOUND_S = 1.5


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def ask(node, path: str, bearer: str | None = API_TOKEN, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return requests.get(node.admin_url + path, headers=headers, params=params, timeout=10)


def room_path(room: str) -> str:
    return PATHS["ROOM_PRESENCE"].replace("{room}", quote(room, safe=""))


def user_path(user: str) -> str:
    return PATHS["USER_PRESENCE"].replace("{user}", quote(user, safe=""))


@pytest.fixture
def nodes(redis_server, start_node):
    return [start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET) for n in "abc"]


@pytest.fixture
def lobby(processes, nodes):
    """30 sockets in room `lobby #1`, 10 per node: on each, 5 users with 2 sockets each."""
    swarms = []
    for node in nodes:
        users = [f"{node.node_id}{k}" for k in range(5)]
        swarm = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 10,
                                        "auths": [{"token": token(u)} for u in users],
                                        "rooms": ["lobby #1"]}, name=f"lobby-{node.node_id}")
        swarms.append(swarm)
    for swarm in swarms:
        swarm.wait_ready()
    users = sorted(f"{n.node_id}{k}" for n in nodes for k in range(5))
    yield users
    for swarm in swarms:
        swarm.close()


def test_a_room_is_counted_and_its_users_listed_across_every_node(nodes, lobby):
    started = time.monotonic()
    answer = ask(nodes[1], room_path("lobby #1"))
    took_ms = (time.monotonic() - started) * 1000
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sockets": 30, "users": lobby, "next": None, "partial": False,
                             "nodes": 3, "asked": 3}, answer.json()
    # Pages of 4: every user once, in order, then no next page.
    seen, after = [], None
    while True:
        page = ask(nodes[2], room_path("lobby #1"), limit=4, **({"after": after} if after else {})).json()
        assert len(page["users"]) <= 4 and page["sockets"] == 30, page
        seen += page["users"]
        after = page["next"]
        if after is None:
            break
        assert after == page["users"][-1], page
    assert seen == lobby
    # A user's sockets, counted wherever they are; a room nobody is in.
    assert ask(nodes[0], user_path("b3")).json() == {"user": "b3", "sockets": 2, "partial": False,
                                                     "nodes": 3, "asked": 3}
    empty = ask(nodes[0], room_path("nobody-here")).json()
    assert (empty["sockets"], empty["users"], empty["partial"]) == (0, [], False), empty
    print(f"\npresence of a room with 30 sockets on 3 nodes: answered in {took_ms:.0f} ms")


def test_a_stopped_node_makes_the_answer_partial_within_the_deadline(nodes, lobby):
    stopped = nodes[2]
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = ask(nodes[0], room_path("lobby #1"))
        took_s = time.monotonic() - started
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["partial"], body["nodes"], body["asked"], body["sockets"]) == (True, 2, 3, 20), body
    assert body["users"] == [u for u in lobby if not u.startswith("c")]
    print(f"\npresence with one of 3 nodes SIGSTOPped: partial answer after {took_s:.2f} s")
    assert took_s <= PARTIAL_BOUND_S, f"answered after {took_s:.2f} s"


def test_a_single_node_without_redis_answers_alone(processes, start_node):
    node = start_node(JWT_SECRET=SECRET)
    with NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 2,
                                 "auth": {"token": token("solo")}, "rooms": ["r"]}, name="solo") as c:
        c.wait_ready()
        assert ask(node, room_path("r")).json() == {"sockets": 2, "users": ["solo"], "next": None,
                                                    "partial": False, "nodes": 1, "asked": 1}


@pytest.mark.parametrize("path, params, bearer, status, message", [
    (room_path("r"), {}, None, 401, "bearer token"),
    (room_path("r"), {}, "wrong", 401, "bearer token"),
    (room_path("x" * 201), {}, API_TOKEN, 400, "1 to 200 bytes"),
    (room_path("r"), {"limit": 1001}, API_TOKEN, 400, "at most 1000"),
    (room_path("r"), {"limit": "many"}, API_TOKEN, 400, "limit"),
    (room_path("r"), {"page": 2}, API_TOKEN, 400, "page"),
    (user_path("u" * 257), {}, API_TOKEN, 400, "1 to 256 bytes"),
])
def test_bad_questions_are_refused_saying_why(nodes, path, params, bearer, status, message):
    answer = ask(nodes[0], path, bearer=bearer, **params)
    assert answer.status_code == status, answer.text
    assert message in answer.text, answer.text


PRESENCE_JOIN = contract()["socket"]["PRESENCE_JOIN"]
PRESENCE_LEAVE = contract()["socket"]["PRESENCE_LEAVE"]


def member(processes, node, sub: str, rooms: list[str], name: str) -> NodeClients:
    c = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "auth": {"token": token(sub)},
                                "rooms": rooms}, name=name)
    c.wait_ready()
    return c


def presence(c: NodeClients) -> list[tuple[str, dict]]:
    return [(e["event"], e["data"]) for e in c.of("event") if e["event"] in (PRESENCE_JOIN, PRESENCE_LEAVE)]


def test_join_and_leave_events_reach_the_other_members_on_every_node(processes, redis_server, start_node):
    a, b = (start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET, PRESENCE_EVENTS="true") for n in "ab")
    watcher = member(processes, a, "w", ["lobby"], "watcher")
    ann = member(processes, b, "ann", ["lobby", "other"], "ann")
    watcher.wait("event", event=PRESENCE_JOIN)
    ann.send({"cmd": "emit", "event": "unsubscribe", "data": {"rooms": ["lobby"]}, "ack": True})
    ann.wait("ack", event="unsubscribe")
    watcher.wait("event", event=PRESENCE_LEAVE)
    bob = member(processes, a, "bob", ["lobby"], "bob")
    watcher.wait("event", 2, event=PRESENCE_JOIN)
    bob.close()
    watcher.wait("event", 2, event=PRESENCE_LEAVE)
    assert presence(watcher) == [
        (PRESENCE_JOIN, {"room": "lobby", "user": "ann"}),
        (PRESENCE_LEAVE, {"room": "lobby", "user": "ann"}),
        (PRESENCE_JOIN, {"room": "lobby", "user": "bob"}),
        (PRESENCE_LEAVE, {"room": "lobby", "user": "bob"}),
    ], "the other room, the user room and the own socket are never announced"
    assert all(e.get("offset") is None for e in watcher.of("event")), "live only: no offset, not in history"
    assert presence(ann) == [], "a socket is not told about itself"
    # a: w's and bob's joins, bob's leave; b: ann's joins of lobby and other, her leave.
    assert (a.metric("PRESENCE_EVENTS", result="sent"), b.metric("PRESENCE_EVENTS", result="sent")) == (3, 3)


def test_presence_events_are_rate_limited_per_room_and_off_by_default(processes, redis_server, start_node):
    node = start_node(redis_server.url, JWT_SECRET=SECRET, PRESENCE_EVENTS="true", PRESENCE_EVENTS_PER_SECOND=2)
    watcher = member(processes, node, "w", ["crowded"], "watcher")
    crowd = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 10,
                                    "auths": [{"token": token(f"c{k}")} for k in range(10)], "rooms": ["crowded"]},
                        name="crowd")
    crowd.wait_ready()
    sent = node.metric("PRESENCE_EVENTS", result="sent")
    dropped = node.metric("PRESENCE_EVENTS", result="dropped")
    # The watcher's own join, then the crowd's 10 against a burst of 4 (2/s).
    assert sent + dropped == 11 and dropped >= 5, (sent, dropped)
    assert len(watcher.settle(PRESENCE_JOIN, int(sent) - 1)) == sent - 1, "every event sent arrives, no more"

    quiet = start_node(redis_server.url, node_id="quiet", JWT_SECRET=SECRET)
    listener = member(processes, quiet, "l", ["calm"], "listener")
    member(processes, quiet, "x", ["calm"], "joiner").close()
    assert quiet.metric("PRESENCE_EVENTS") == 0
    assert listener.settle(PRESENCE_JOIN, 0) == [] and presence(listener) == []
