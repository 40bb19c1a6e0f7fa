"""Hostile-input finding 2: one socket sending ~77k `subscribe` events/s for 20 s delayed
every other client of its node by up to ~40 s and grew memory by 450 MB. Now each socket
has a budget of room requests (PUSH_EVENTS_PER_SECOND / PUSH_EVENT_BURST): excess requests
get an error ack without work, and a socket that keeps flooding is disconnected. A control
client's publish latency on the same node stays under 1 s during a 10 s flood."""

from __future__ import annotations

import json
import threading
import time

import websocket
from harness import PushServer, PyClient
from harness.raw import rss_mb, socketio_websocket

API_TOKEN = "flood-token"


def flood(url: str, seconds: float, report: dict) -> None:
    """Raw socket.io over WebSocket: `subscribe` with a new room, as fast as it can send;
    disconnected, it connects again and goes on, for `seconds`."""
    sent, connections, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        ws = socketio_websocket(url)
        connections += 1
        try:
            while time.monotonic() < end:
                ws.send(f'42{sent}["subscribe",' + json.dumps({"rooms": [f"flood-{sent}"]}) + "]")
                sent += 1
        except (websocket.WebSocketException, OSError):
            pass
        ws.close()
    report.update(sent=sent, connections=connections)


def test_a_subscribe_flood_does_not_stall_the_node(processes):
    node = PushServer(processes, env={"API_TOKEN": API_TOKEN}).start()
    control = PyClient()
    assert control.connect(node.url)
    assert control.subscribe("ctl")["joined"] == ["ctl"]
    base = rss_mb(node.proc.pid)
    report: dict = {}
    flooder = threading.Thread(target=flood, args=(node.url, 10.0, report))
    flooder.start()
    latencies = []
    n = 0
    while flooder.is_alive():
        sent_at = time.monotonic()
        r = node.publish({"event": "ctl", "room": "ctl", "data": n}, API_TOKEN)
        assert r.status_code == 202
        while n not in control.received("ctl"):
            assert time.monotonic() - sent_at < 5, f"publish {n} not delivered in 5 s"
            time.sleep(0.005)  # polling the client's inbox, not a readiness wait
        latencies.append(time.monotonic() - sent_at)
        n += 1
        time.sleep(0.2)  # the control client's publish rate
    flooder.join()
    grown = rss_mb(node.proc.pid) - base
    print(f"\nsubscribe flood: {report['sent']} requests over 10 s on {report['connections']} connections "
          f"(each disconnected by the server); control latency max {max(latencies) * 1000:.0f} ms over "
          f"{len(latencies)} publishes; RSS +{grown:.0f} MB")
    assert max(latencies) <= 1.0
    assert report["connections"] > 1, "a sustained flood was not disconnected"
    assert grown < 100
    control.close()
