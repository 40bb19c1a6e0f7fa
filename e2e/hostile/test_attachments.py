"""Hostile-input finding 1: a socket declaring 10 binary attachments and sending nine
990 KB frames, then idling, pinned ~9.7 MB each (socketioxide's 10 MB default): 50 such
sockets took a node from 8 MB to 493 MB. Now the attachments of one packet are bounded by
the payload limit in total (and by count): the second 990 KB frame closes the connection,
and 50 such sockets raise the node's RSS by a bounded amount."""

from __future__ import annotations

import json

import websocket
from harness import PushServer, wait_until
from harness.raw import rss_mb, socketio_websocket

FRAME = 990_000
SOCKETS = 50


def attacker(url: str) -> websocket.WebSocket:
    ws = socketio_websocket(url)
    placeholders = [{"_placeholder": True, "num": n} for n in range(10)]
    ws.send("4510-" + json.dumps(["upload", *placeholders]))
    return ws


def send_frames(ws: websocket.WebSocket, count: int) -> int:
    """Binary frames until the server closes the connection; how many it took."""
    for sent in range(count):
        try:
            ws.send_binary(b"\0" * FRAME)
        except (websocket.WebSocketException, OSError):
            return sent
    return count


def closed(ws: websocket.WebSocket) -> bool:
    try:
        ws.settimeout(0.2)
        while True:
            frame = ws.recv()
            if frame == "2":  # ping: answer, as a patient attacker would
                ws.send("3")
    except websocket.WebSocketTimeoutException:
        return False
    except (websocket.WebSocketException, OSError):
        return True


def test_pending_attachments_are_bounded_by_the_payload_limit(processes):
    node = PushServer(processes, env={"API_TOKEN": "t"}).start()
    base = rss_mb(node.proc.pid)
    sockets = [attacker(node.url) for _ in range(SOCKETS)]
    for ws in sockets:
        send_frames(ws, 9)
    wait_until(lambda: all(closed(ws) for ws in sockets), 30, "every attacking connection to be closed")
    grown = rss_mb(node.proc.pid) - base
    print(f"\nattachments: {SOCKETS} sockets x 9 frames of {FRAME} B -> RSS +{grown:.0f} MB (before the bound: +485 MB)")
    assert grown < 150, f"RSS grew by {grown:.0f} MB"
    assert node.get_admin("healthz").status_code == 200
