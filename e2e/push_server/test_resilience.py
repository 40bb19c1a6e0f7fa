"""Failures injected by killing processes: a Redis outage mid-test, SIGTERM drains,
and invalid configuration refused at start."""

import subprocess
import time

from harness import NodeClients, contract, require_binary, wait_until
from harness.push_suite import API_TOKEN


def test_redis_outage_refuses_publishes_at_once_and_fanout_resumes(processes, redis_server, cluster):
    a, b = cluster
    on_a = NodeClients(processes, {"url": a.url, "transports": ["websocket"], "rooms": ["r"]}, name="on-a")
    on_b = NodeClients(processes, {"url": b.url, "transports": ["websocket"], "rooms": ["r"]}, name="on-b")
    on_a.wait_ready()
    on_b.wait_ready()

    redis_server.kill()
    for node in (a, b):
        wait_until(lambda: node.metric("REDIS_UP") == 0, 10, f"{node.node_id} sees redis down")
        assert node.readyz() == 503
    # 202 would promise every node delivers; without Redis only a 503 is true.
    asked = time.monotonic()
    response = a.publish({"event": "m", "data": "during", "room": "r"}, API_TOKEN)
    assert time.monotonic() - asked < 1.0, "a publish during an outage must not hang"
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert "not accepted" in response.json()["error"]
    assert a.metric("PUBLISH_REQUESTS", source="http", result="redis_unavailable") == 1

    redis_server.start()  # same port
    for node in (a, b):
        wait_until(lambda: node.metric("REDIS_UP") == 1 and node.readyz() == 200, 20,
                   f"{node.node_id} back")
    assert a.proc.poll() is None and b.proc.poll() is None
    # The socket.io adapter's channel and the publish channel: both nodes again.
    channel = contract()["defaults"]["REDIS_CHANNEL"]
    adapter_channel = f"{contract()['cluster']['ADAPTER_PREFIX']}-request#/#"
    for chan, subscribers in ((channel, "2"), (adapter_channel, "2")):
        wait_until(lambda: redis_server.cli("PUBSUB", "NUMSUB", chan).split()[-1] == subscribers, 10,
                   f"{subscribers} subscribed to {chan} again")
    # Both clients stayed connected through the outage; fan-out resumes, no restart.
    for sender in (b, a):
        response = sender.publish({"event": "m", "data": f"after-{sender.node_id}", "room": "r"}, API_TOKEN)
        assert response.json()["fanout"] == "cluster", response.text
    assert sorted(e["data"] for e in on_a.settle("m", 2)) == ["after-a", "after-b"]
    assert sorted(e["data"] for e in on_b.settle("m", 2)) == ["after-a", "after-b"]
    assert not on_a.of("disconnect") and not on_b.of("disconnect")


def test_sigterm_drains_in_spread_batches_then_exits_0(processes, start_node):
    """Not ready and refusing new sessions at once; nobody moved during the settle (the
    time the Service takes to stop routing here); then every client moved off once, spread
    over the window; exit 0."""
    window, settle = 3.0, 1.0
    node = start_node(DRAIN_SECONDS=int(window), DRAIN_SETTLE_MS=int(settle * 1000))
    ws = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 24}, name="ws")
    polling = NodeClients(processes, {"url": node.url, "transports": ["polling"], "count": 6}, name="poll")
    ws.wait_ready()
    polling.wait_ready()
    wait_until(lambda: node.connections() == 30, 10, "30 connections")

    started = time.time()
    node.sigterm()
    wait_until(lambda: node.readyz() == 503, 1.0, "readiness to flip at once")
    flipped = time.time() - started
    assert node.metric("DRAINING") == 1
    late = NodeClients(processes, {"url": node.url, "transports": ["websocket"]}, name="late")
    late.wait("connect_error", timeout=5)
    assert not late.of("connected")

    assert node.wait_exit(window + 10) == 0
    gone = ws.of("disconnect") + polling.of("disconnect")
    assert len(gone) == 30, f"{len(gone)} of 30 clients saw a disconnect"
    # Moved off as a transport loss, so the official client reconnects by itself.
    assert {d["reason"] for d in gone} <= {"transport close", "transport error"}, {d["reason"] for d in gone}
    offsets = sorted(d["t"] / 1000 - started for d in gone)
    print(f"readiness flipped after {flipped:.3f}s; disconnects from {offsets[0]:.2f}s to {offsets[-1]:.2f}s")
    assert offsets[0] >= settle - 0.05, f"a client was moved before the settle ended: {offsets}"
    assert offsets[-1] - offsets[0] >= window * 0.6, offsets
    assert offsets[-1] <= settle + window + 1.0, offsets
    buckets = {int((o - settle) / (window / 6)) for o in offsets}
    assert len(buckets) >= 5, f"not spread evenly: {offsets}"


def test_second_signal_cuts_the_drain_short(processes, start_node):
    node = start_node(DRAIN_SECONDS=60)
    clients = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 10})
    clients.wait_ready()
    node.sigterm()
    wait_until(lambda: node.readyz() == 503, 1.0, "draining")
    node.sigterm()
    assert node.wait_exit(8) == 0
    clients.wait("disconnect", 10, timeout=5)


def test_invalid_configuration_is_refused_at_start(tmp_path):
    binary = require_binary("push-server", "PUSH_SERVER_BIN")
    names = contract()["env"]
    result = subprocess.run([binary], env={names["SESSION_SECRET"]: "s"}, capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 2
    assert names["SESSION_SECRET"] in result.stderr and names["REDIS_URL"] in result.stderr, result.stderr
