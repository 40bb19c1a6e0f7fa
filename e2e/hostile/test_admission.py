"""Hostile-input finding 3: 20,000 idle TCP connections (no bytes sent) filled a node's
open-file limit and took down new clients, the publish API and the admin /healthz (so
Kubernetes would restart the pod); slowloris connections stayed open for the full 130 s.
Now the client port admits at most PUSH_MAX_CONNECTIONS (default: the open-file limit minus
a reserve) and closes the rest at accept, a connection that does not send its request head
within PUSH_HEADER_TIMEOUT_SECONDS is closed, and /readyz says not-ready at 90 % of the cap."""

from __future__ import annotations

import socket
import time

import requests
from harness import PushServer, PyClient, wait_until

IDLE = 19_500


def open_idle(host: str, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for n in range(count):
        s = socket.socket()
        s.setblocking(True)
        s.bind((f"127.0.{(n // 20_000) + 3}.{(n % 250) + 1}", 0))
        s.connect((host, port))
        sockets.append(s)
    return sockets


def peer_closed(s: socket.socket) -> bool:
    s.settimeout(0)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_health_and_publish_answer_while_the_client_port_holds_19500_idle_connections(processes):
    node = PushServer(processes, env={"API_TOKEN": "t", "HEADER_TIMEOUT_SECONDS": 3}).start()
    idle = open_idle("127.0.0.1", node.port, IDLE)
    try:
        asked = time.monotonic()
        assert node.get_admin("healthz").status_code == 200
        publish = node.publish({"event": "e", "broadcast": True, "data": 1}, "t")
        took = time.monotonic() - asked
        assert publish.status_code == 202, publish.text
        assert took < 2.0, f"health + publish took {took:.2f} s"
        # Connections that never send a request head are closed after the header timeout.
        closed = wait_until(lambda: sum(peer_closed(s) for s in idle[:200]) == 200 or None, 15,
                            "the idle connections to be closed by the header timeout")
        assert closed
        client = PyClient()
        assert client.connect(node.url), client.error_message()
        client.close()
        print(f"\nadmission: {IDLE} idle connections: /healthz + publish answered in {took:.2f} s; "
              f"idle connections closed after the 3 s header timeout")
    finally:
        for s in idle:
            s.close()


def test_the_connection_cap_closes_the_excess_and_readiness_flips_first(processes):
    node = PushServer(processes, env={"API_TOKEN": "t", "MAX_CONNECTIONS": 100, "HEADER_TIMEOUT_SECONDS": 60}).start()
    assert node.metric("CONNECTION_LIMIT") == 100, "the limit the alert compares connections with"
    held = open_idle("127.0.0.1", node.port, 95)
    try:
        wait_until(lambda: node.readyz() == 503, 5, "not-ready at 90 % of the cap")
        assert "connection cap" in node.get_admin("readyz").text
        extra = open_idle("127.0.0.1", node.port, 10)
        wait_until(lambda: sum(peer_closed(s) for s in extra) >= 5, 5, "connections beyond the cap closed at accept")
        assert node.get_admin("healthz").status_code == 200
        for s in extra:
            s.close()
    finally:
        for s in held:
            s.close()
    wait_until(lambda: node.readyz() == 200, 10, "ready again once the connections left")
    assert requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling", timeout=5).status_code == 200


def test_a_reconnect_storm_is_spread_by_the_handshake_rate(processes):
    """150 official clients arriving at once at a node taking 50 handshakes a second: the
    excess is answered 503 + Retry-After (counted), the clients retry with their backoff,
    and all of them are connected a few seconds later instead of all at once."""
    from harness import NodeClients

    rate, count = 50, 150
    node = PushServer(processes, env={"HANDSHAKES_PER_SECOND": rate}).start()
    answer = requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling", timeout=5)
    assert answer.status_code == 200
    started = time.time() * 1000
    storm = NodeClients(processes, {"url": node.url, "count": count, "transports": ["websocket"],
                                    "reconnection": True, "reconnectionDelay": 200, "reconnectionDelayMax": 2000})
    storm.wait_ready(timeout=60)
    first = {}
    for line in storm.of("connected"):
        first.setdefault(line["i"], line["t"])
    spread = (max(first.values()) - started) / 1000
    refused = node.metric("HANDSHAKES_REFUSED")
    errors = len(storm.of("connect_error"))
    print(f"\nreconnect storm: {count} clients at {rate} handshakes/s: all connected within {spread:.1f} s, "
          f"{refused:.0f} handshakes answered 503 (the clients saw {errors} connect errors and retried)")
    assert refused > 0 and errors > 0, "the excess was refused"
    # A second's burst, then the rate: the last ones cannot be in before ~(count - rate) / rate s.
    assert spread >= (count - rate) / rate * 0.8, f"absorbed in {spread:.1f} s"
    assert len(first) == count
