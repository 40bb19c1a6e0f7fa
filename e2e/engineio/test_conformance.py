"""Engine.IO v4 conformance where engineioxide 0.17.9 deviated (the engine-layer issue),
spoken raw over HTTP long-polling and WebSocket against a real push-server node.

Each test fails on upstream engineioxide: the patch carried in vendor/ fixes it.
"""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import pytest
import requests
import websocket

from harness import PushServer
from harness.core import contract

PING_INTERVAL_MS = 600
PING_TIMEOUT_MS = 400


@pytest.fixture
def node(processes):
    names = contract()["env"]
    env = {names["PING_INTERVAL_MS"]: PING_INTERVAL_MS, names["PING_TIMEOUT_MS"]: PING_TIMEOUT_MS}
    return PushServer(processes, env=env, node_id="eio").start()


def engine_url(node: PushServer, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"EIO": 4, **query}.items())
    return f"{node.url}{contract()['paths']['SOCKET_IO']}?{q}"


def open_polling(node: PushServer) -> dict:
    r = requests.get(engine_url(node, transport="polling"), timeout=5)
    assert r.status_code == 200 and r.text.startswith("0"), r.text
    return json.loads(r.text[1:])


def open_ws(url: str) -> websocket.WebSocket:
    return websocket.create_connection(url.replace("http://", "ws://"), timeout=5)


def test_the_first_ping_comes_after_ping_interval_not_at_the_handshake(node):
    ws = open_ws(engine_url(node, transport="websocket"))
    opened_at = time.monotonic()
    handshake = json.loads(ws.recv()[1:])
    assert handshake["pingInterval"] == PING_INTERVAL_MS, handshake
    assert ws.recv() == "2"
    first_ping = time.monotonic() - opened_at
    ws.send("3")
    assert ws.recv() == "2"
    second_ping = time.monotonic() - opened_at
    ws.close()
    # Engine.IO v4: the server pings every pingInterval, the first one included.
    assert first_ping >= PING_INTERVAL_MS / 1000 * 0.9, f"first PING after {first_ping:.3f} s"
    assert second_ping - first_ping >= PING_INTERVAL_MS / 1000 * 0.9, (first_ping, second_ping)


def test_the_first_ping_over_polling_comes_after_ping_interval(node):
    sid = open_polling(node)["sid"]
    started = time.monotonic()
    r = requests.get(engine_url(node, transport="polling", sid=sid), timeout=5)
    waited = time.monotonic() - started
    assert r.text == "2", r.text
    assert waited >= PING_INTERVAL_MS / 1000 * 0.9, f"first PING after {waited:.3f} s"


def probe(ws: websocket.WebSocket) -> None:
    ws.send("2probe")
    assert ws.recv() == "3probe"


def closed_within(ws: websocket.WebSocket, seconds: float) -> bool:
    """True when the server closes `ws` (close frame or EOF) within `seconds`."""
    ws.settimeout(seconds)
    try:
        while True:
            frame = ws.recv()
            if frame in ("", None):
                return True
    except websocket.WebSocketConnectionClosedException:
        return True
    except (websocket.WebSocketTimeoutException, TimeoutError, socket.timeout):
        return False


@pytest.mark.parametrize("when", ["during the upgrade", "after the upgrade"])
def test_a_second_websocket_with_the_same_sid_is_closed_at_once(node, when):
    sid = open_polling(node)["sid"]
    upgrade = open_ws(engine_url(node, transport="websocket", sid=sid))
    probe(upgrade)
    if when == "after the upgrade":
        upgrade.send("5")
    intruder = open_ws(engine_url(node, transport="websocket", sid=sid))
    started = time.monotonic()
    assert closed_within(intruder, 2), "the second WebSocket was held open"
    assert time.monotonic() - started < 1, "closed, but not at once"
    if when == "during the upgrade":
        upgrade.send("5")
    # The real upgrade goes on: the session answers over the upgraded WebSocket.
    upgrade.send("40")
    upgrade.settimeout(5)
    while (frame := upgrade.recv()) == "2":
        upgrade.send("3")
    assert frame.startswith("40"), frame
    upgrade.close()


def test_overlapping_polling_posts_get_400_and_close_the_session(node):
    sid = open_polling(node)["sid"]
    url = urlparse(engine_url(node, transport="polling", sid=sid))
    head, rest = b"40\x1e", b"3"
    # The first POST sends a socket.io CONNECT and holds the rest of its body back...
    first = socket.create_connection((url.hostname, url.port), timeout=5)
    first.sendall(
        f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(head + rest)}\r\n\r\n".encode() + head)
    # ...and the CONNECT's answer on a GET proves the server is inside that POST.
    connected = requests.get(engine_url(node, transport="polling", sid=sid), timeout=5)
    assert connected.text.startswith("40"), connected.text
    second = requests.post(engine_url(node, transport="polling", sid=sid), data=b"3", timeout=5)
    first.sendall(rest)
    assert second.status_code == 400, (second.status_code, second.text)
    # The session is gone: its sid is unknown from now on.
    after = requests.get(engine_url(node, transport="polling", sid=sid), timeout=5)
    assert after.status_code == 400, (after.status_code, after.text)
    first.close()
