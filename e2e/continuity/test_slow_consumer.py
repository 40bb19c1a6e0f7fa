"""A slow consumer (#13): a client that stops reading (its process is stopped) fills the
kernel's buffers, then its socket's send queue; the node then drops messages for it,
counts them (`push_slow_consumer_drops_total`) and cuts its connection instead of letting
it miss messages silently. Resumed, the client reconnects, recovers (`recovered ===
true`) and ends with every message once, in order: no gap."""

from __future__ import annotations

import os
import signal

from harness import NodeClients, PushServer, wait_until
from harness.continuity import offset_key

API_TOKEN = "slow-token"
SEND_BUFFER = 16
PAYLOAD = "x" * 50_000


def test_a_client_that_stops_reading_is_cut_then_recovers_without_a_gap(processes, redis_server):
    node = PushServer(processes, redis_url=redis_server.url, node_id="a", env={
        "API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 2000, "HISTORY_TTL_SECONDS": 300,
        "SEND_BUFFER_MESSAGES": SEND_BUFFER}).start()
    slow = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["news"], "dataBytes": True,
                                   "reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500},
                       name="slow")
    slow.wait_ready()
    sent = 0

    def publish() -> None:
        nonlocal sent
        response = node.publish({"event": "big", "room": "news", "data": {"n": sent, "pad": PAYLOAD}}, API_TOKEN)
        assert response.status_code == 202, response.text
        sent += 1

    publish()
    slow.wait("event", event="big")
    os.kill(slow.proc.pid, signal.SIGSTOP)
    try:
        # Until the node gave up on it: kernel buffers (a few MB) and then the send queue.
        def cut():
            publish()
            return node.metric("SLOW_CONSUMER_DROPS", reason="send_buffer_full") > 0
        wait_until(cut, 60, "the node dropping messages for the stopped client", interval=0.01)
        for _ in range(20):
            publish()
        dropped = node.metric("SLOW_CONSUMER_DROPS", reason="send_buffer_full")
    finally:
        os.kill(slow.proc.pid, signal.SIGCONT)
    again = slow.wait("connected", 2, timeout=20)[1]
    assert again["recovered"] is True, again
    publish()  # one after the recovery
    wait_until(lambda: len(slow.events("big")) >= sent, 30, f"all {sent} messages")
    got = [e["offset"] for e in slow.events("big")]
    assert len(got) == sent == len(set(got)), f"{len(got)} events for {sent} messages"
    assert got == sorted(got, key=offset_key)
    assert len(slow.of("disconnect")) == 1
    print(f"\nslow consumer: {sent} messages of 50 KB, {dropped:.0f} dropped by the node, connection cut, "
          f"recovered with all {sent} once, in order (send buffer {SEND_BUFFER} messages)")
