"""Hostile-input findings 5 and 6 (the publish API never says 202 for a message it drops):
a body under the limit whose cluster envelope is over it, and numbers the server would
re-serialise longer, used to be answered 202 "cluster" and delivered to nobody; a publish
during a Redis outage hung 7.8-9 s. Now: 413 naming the wrapped size, and 503 + Retry-After
within the Redis timeout (default 500 ms)."""

from __future__ import annotations

import json
import time

import pytest
from harness import NodeClients, PushServer, contract

API_TOKEN = "hostile-token"
LIMIT = contract()["defaults"]["MAX_PAYLOAD_BYTES"]


@pytest.fixture
def pair(processes, redis_server):
    nodes = [PushServer(processes, redis_url=redis_server.url, env={"API_TOKEN": API_TOKEN}, node_id=n).start()
             for n in ("a", "b")]
    listener = NodeClients(processes, {"url": nodes[1].url, "transports": ["websocket"], "rooms": ["r"]}, name="on-b")
    listener.wait_ready()
    return nodes, listener


def body_of(size: int) -> bytes:
    """A room publish whose JSON body is exactly `size` bytes."""
    head = json.dumps({"event": "big", "room": "r", "data": ""})
    return json.dumps({"event": "big", "room": "r", "data": "x" * (size - len(head))}).encode()


@pytest.mark.parametrize("body", [
    body_of(LIMIT - 10),
    json.dumps({"event": "big", "room": "r", "data": [1e15] * 60_000}).replace("1000000000000000.0", "1e15").encode(),
], ids=["just-under-the-limit", "numbers-that-grow"])
def test_a_body_under_the_limit_that_cannot_travel_is_refused_not_dropped(pair, body):
    (a, _), listener = pair
    assert len(body) <= LIMIT
    response = a.publish(body, API_TOKEN, raw=True, headers={"Content-Type": "application/json"})
    assert response.status_code in (202, 413), response.text
    if response.status_code == 413:
        assert "once wrapped for the cluster channel" in response.json()["error"]
    else:
        # Accepted means delivered: the other node's client gets it.
        listener.wait("event", timeout=10, event="big")
    after = a.publish({"event": "small", "room": "r", "data": 1}, API_TOKEN)
    assert after.status_code == 202
    listener.wait("event", timeout=10, event="small")
    if response.status_code == 413:
        assert listener.events("big") == [], "a refused message was delivered"


def test_a_publish_during_a_redis_outage_is_answered_503_within_a_second(pair, redis_server):
    (a, _), _ = pair
    redis_server.kill()
    for timing in range(3):
        asked = time.monotonic()
        response = a.publish({"event": "m", "room": "r", "data": timing}, API_TOKEN)
        took = time.monotonic() - asked
        assert response.status_code == 503, response.text
        assert response.headers.get("Retry-After") == "1"
        assert took < 1.0, f"answered after {took:.2f} s"
