"""Token refresh in band (#28): an official socket.io client emits `refresh_token`
`{"token"}` before its JWT's `exp` and keeps its connection (real push-server on a real
Redis with history on). A token of another subject, a bad signature or an earlier `exp`
is refused and the old expiry stands; a token whose `rooms` claim drops a room makes
the socket leave it."""

import time

import jwt
import pytest

from harness import NodeClients, contract
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
SOCKET = contract()["socket"]


def token(sub: str, exp: int, rooms: list[str] | None = None, secret: str = SECRET) -> str:
    claims = {"sub": sub, "iat": int(time.time()), "exp": exp, **({"rooms": rooms} if rooms else {})}
    return jwt.encode(claims, secret, algorithm="HS256")


def until(moment: float) -> None:
    """Waits for a wall-clock moment: the subject here is time (a token's `exp`)."""
    time.sleep(max(0.0, moment - time.time()))


@pytest.fixture
def node(redis_server, start_node):
    return start_node(redis_server.url, JWT_SECRET=SECRET, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=60)


def connect(processes, node, first_token: str, rooms: list[str]) -> NodeClients:
    c = NodeClients(processes, {"url": node.url, "auth": {"token": first_token}, "rooms": rooms,
                                "transports": ["websocket"]}, name="refreshing")
    c.wait_ready()
    return c


def refresh(c: NodeClients, new_token: str, n: int) -> dict:
    c.send({"cmd": "emit", "event": SOCKET["REFRESH_TOKEN"], "data": {"token": new_token}, "ack": True})
    return c.wait("ack", n, event=SOCKET["REFRESH_TOKEN"])[n - 1]["ack"]


def test_three_refreshes_keep_the_connection_past_every_original_expiry(processes, node):
    base = int(time.time())
    c = connect(processes, node, token("ann", base + 3), ["news.eu"])
    for n, (exp, past) in enumerate([(base + 5, base + 3), (base + 7, base + 5), (base + 60, base + 7)], start=1):
        answer = refresh(c, token("ann", exp), n)
        assert answer == {"exp": exp}, answer
        until(past + 0.5)  # the token it replaced has expired by now
        assert c.of("disconnect") == [] and c.events(SOCKET["AUTH_EXPIRED"]) == [], f"refresh {n}"
    assert len(c.of("connected")) == 1, "never reconnected"
    assert node.publish({"event": "news", "data": "still here", "room": "news.eu"}, API_TOKEN).status_code == 202
    assert c.wait("event", event="news")[0]["data"] == "still here"


@pytest.mark.parametrize("case", ["another subject", "bad signature", "not later", "not a token"])
def test_a_refused_refresh_says_why_and_the_old_expiry_stands(processes, node, case):
    base = int(time.time())
    c = connect(processes, node, token("ann", base + 3), [])
    new = {"another subject": token("bob", base + 60),
           "bad signature": token("ann", base + 60, secret="another-secret-with-enough-bytes-32"),
           "not later": token("ann", base + 2),
           "not a token": "not-a-jwt"}[case]
    answer = refresh(c, new, 1)
    assert set(answer) == {"error"}, answer
    expected = {"another subject": "another subject", "bad signature": "refused", "not later": "not later",
                "not a token": "refused"}[case]
    assert expected in answer["error"], answer
    expired = c.wait("event", event=SOCKET["AUTH_EXPIRED"], timeout=10)[0]
    assert expired["t"] / 1000 >= base + 3 - 0.05, "ended at the old token's exp, not before"
    assert c.wait("disconnect")[0]["reason"] == "io server disconnect"


def test_a_refresh_that_drops_a_room_leaves_it(processes, node):
    base = int(time.time())
    c = connect(processes, node, token("ann", base + 60, rooms=["news.*", "team-7"]), ["news.eu", "team-7"])
    answer = refresh(c, token("ann", base + 120, rooms=["news.*"]), 1)
    assert answer == {"exp": base + 120, "left": ["team-7"]}, answer
    revoked = c.wait("event", event=SOCKET["ROOMS_REVOKED"])[0]["data"]
    assert revoked["rooms"] == ["team-7"], revoked
    for room in ("team-7", "news.eu"):
        assert node.publish({"event": "m", "data": room, "room": room}, API_TOKEN).status_code == 202
    assert c.wait("event", event="m")[0]["data"] == "news.eu"
    # Published in order on one node: had team-7 reached it, it would have come first.
    assert [e["data"] for e in c.events("m")] == ["news.eu"]
