"""History bounds (#13): within `maxMessages` and `ttlSeconds` a client that comes back
gets `socket.recovered === true` and what it missed; beyond either it gets
`recovered === false` and a `continuity_broken` event naming the rooms to resync, and
nothing of those rooms' partial history."""

from __future__ import annotations

import time

import pytest

from harness import NodeClients, PushServer, contract, wait_until

API_TOKEN = "bounds-token"
BROKEN = contract()["socket"]["CONTINUITY_BROKEN"]
MAX_MESSAGES = 5
TTL_SECONDS = 2


@pytest.fixture
def node(processes, redis_server):
    return PushServer(processes, redis_url=redis_server.url, node_id="a", env={
        "API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": MAX_MESSAGES, "HISTORY_TTL_SECONDS": TTL_SECONDS}).start()


def away_then_back(node, processes, missed: int, away_s: float = 0.0):
    """A client with one message goes away (socket.disconnect()), `missed` messages are
    published to its room, it stays away `away_s` more, then connects again."""
    client = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["news"]})
    client.wait_ready()
    assert node.publish({"event": "m", "room": "news", "data": -1}, API_TOKEN).status_code == 202
    client.wait("event", event="m")
    client.send({"cmd": "drop"})
    client.wait("disconnect")
    for k in range(missed):
        assert node.publish({"event": "m", "room": "news", "data": k}, API_TOKEN).status_code == 202
    time.sleep(away_s)  # the time the client is away: the scenario, not a readiness wait
    client.send({"cmd": "connect"})
    return client, client.wait("connected", 2)[1]


def test_within_the_bounds_the_client_recovers_what_it_missed(node, processes):
    client, again = away_then_back(node, processes, missed=MAX_MESSAGES)
    assert again["recovered"] is True
    got = wait_until(lambda: len(client.events("m")) == MAX_MESSAGES + 1 and client.events("m"), 10, "the replay")
    assert [e["data"] for e in got] == [-1, *range(MAX_MESSAGES)]
    assert client.events(BROKEN) == []


@pytest.mark.parametrize("bound, missed, away_s, reason", [
    ("maxMessages", MAX_MESSAGES + 5, 0.0, "history-trimmed"),
    ("ttlSeconds", 1, TTL_SECONDS + 1.0, "history-expired"),
])
def test_beyond_a_bound_the_client_is_told_which_rooms_to_resync(node, processes, redis_server, bound, missed,
                                                                 away_s, reason):
    client, again = away_then_back(node, processes, missed=missed, away_s=away_s)
    stream = f"{contract()['defaults']['REDIS_CHANNEL']}:h:/:r:news"
    if bound == "maxMessages":
        assert redis_server.cli("XLEN", stream).strip() == str(MAX_MESSAGES), "the room's history is bounded"
    else:
        assert redis_server.cli("EXISTS", stream).strip() == "0", "the room's history expired"
    assert again["recovered"] is False, bound
    broken = client.wait("event", event=BROKEN)[0]["data"]
    assert broken["reason"] == reason and "news" in broken["rooms"], broken
    # The room's partial history is not replayed (the app resyncs it), and the client
    # still receives the room: it kept its rooms.
    assert node.publish({"event": "m", "room": "news", "data": "live"}, API_TOKEN).status_code == 202
    wait_until(lambda: client.events("m")[-1]["data"] == "live", 10, "live messages after the break")
    assert [e["data"] for e in client.events("m")] == [-1, "live"], bound
    assert node.metric("RECOVERIES", result="broken") == 1
