"""Hostile-input finding 7: a JWT was checked at the handshake only, so a socket kept
receiving its user's messages long after the token expired. Now, at `exp`, the socket gets
the `auth_expired` event saying why and is disconnected (within 2 s of `exp`); a client
with a fresh token connects again."""

from __future__ import annotations

import threading
import time

import jwt
import socketio
from harness import PushServer, contract

SECRET = "expiry-secret-0123456789abcdef0123"
AUTH_EXPIRED = contract()["socket"]["AUTH_EXPIRED"]


def token(sub: str, lifetime: float) -> tuple[str, int]:
    exp = int(time.time() + lifetime)
    return jwt.encode({"sub": sub, "exp": exp}, SECRET, algorithm="HS256"), exp


def test_a_socket_is_told_and_disconnected_when_its_token_expires(processes):
    node = PushServer(processes, env={"JWT_SECRET": SECRET, "API_TOKEN": "t"}).start()
    events: list[tuple[str, float, object]] = []
    gone = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on(AUTH_EXPIRED, lambda data: events.append((AUTH_EXPIRED, time.time(), data)))

    @client.event
    def disconnect(*_):
        events.append(("disconnect", time.time(), None))
        gone.set()

    short, exp = token("u1", 3)
    client.connect(node.url, auth={"token": short}, transports=["websocket"], wait_timeout=10)
    assert gone.wait(exp - time.time() + 5), "still connected after the token expired"
    kinds = [kind for kind, _, _ in events]
    assert kinds == [AUTH_EXPIRED, "disconnect"], events
    told_at, data = events[0][1], events[0][2]
    assert exp - 0.5 <= told_at <= exp + 2, f"told at {told_at - exp:+.2f} s from exp"
    print(f"\ntoken expiry: told {told_at - exp:+.2f} s and disconnected {events[1][1] - exp:+.2f} s from exp "
          "(was: never)")
    assert data["exp"] == exp and "fresh token" in data["reason"]

    fresh = socketio.Client(reconnection=False)
    fresh.connect(node.url, auth={"token": token("u1", 600)[0]}, transports=["websocket"], wait_timeout=10)
    try:
        assert fresh.connected
    finally:
        fresh.disconnect()
