"""Hostile-input finding 4: one valid API call of a 900 KB broadcast added 864 MB to a node
with 1,000 clients (the payload copied per recipient) and 725 MB stayed allocated after
every client left. Measured here: the node's RSS peak while the broadcast is delivered to
1,000 official clients, and its RSS once they are gone."""

from __future__ import annotations

import threading
import time

from harness import NodeClients, PushServer, wait_until
from harness.raw import rss_mb

API_TOKEN = "hostile-token"
CLIENTS = 1000
PAYLOAD = 900_000
PEAK_LIMIT_MB = 64
KEPT_LIMIT_MB = 32


def test_a_large_broadcast_is_not_copied_per_recipient_and_its_memory_is_returned(processes):
    # All 1,000 connect at once and do not retry: no handshake rate here (it has its own test).
    node = PushServer(processes, env={"API_TOKEN": API_TOKEN, "HANDSHAKES_PER_SECOND": 0}).start()
    clients = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": CLIENTS,
                                      "dataBytes": True}, name="receivers")
    clients.wait_ready(timeout=60)
    wait_until(lambda: node.connections() == CLIENTS, 20, f"{CLIENTS} connections on the node")
    base = rss_mb(node.proc.pid)

    peak, sampling = [base], threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak.append(rss_mb(node.proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = node.publish({"event": "big", "broadcast": True, "data": "x" * PAYLOAD}, API_TOKEN)
        assert response.status_code == 202, response.text
        clients.wait("event", CLIENTS, timeout=120, event="big")
    finally:
        sampling.set()
        sampler.join()
    assert {line["bytes"] for line in clients.of("event", event="big")} == {PAYLOAD + 2}
    clients.close()
    wait_until(lambda: node.connections() == 0, 20, "every client gone")
    # The allocator may return freed memory a little later: poll, with a deadline.
    deadline, kept = time.monotonic() + 10, rss_mb(node.proc.pid) - base
    while kept >= KEPT_LIMIT_MB and time.monotonic() < deadline:
        time.sleep(0.2)
        kept = rss_mb(node.proc.pid) - base
    grown = max(peak) - base
    print(f"\nlarge broadcast: {PAYLOAD // 1000} KB to {CLIENTS} clients -> RSS peak +{grown:.0f} MB "
          f"(was +864 MB), after they left +{kept:.0f} MB (was +725 MB)")
    assert grown < PEAK_LIMIT_MB, f"RSS peak +{grown:.0f} MB for one {PAYLOAD // 1000} KB broadcast"
    assert kept < KEPT_LIMIT_MB, f"+{kept:.0f} MB still held after every client left"
