"""Hostile-input finding 1: a socket declaring 10 binary attachments and sending nine
990 KB frames, then idling, pinned ~9.7 MB each (socketioxide's 10 MB default): 50 such
sockets took a node from 8 MB to 493 MB. Now the attachments of one packet are bounded by
the payload limit in total (and by count): the second 990 KB frame closes the connection,
and 50 such sockets raise the node's RSS by a bounded amount."""

from __future__ import annotations

import json
import time

import websocket
from harness import PushServer, wait_until
from harness.raw import rss_mb, socketio_websocket

FRAME = 990_000
SOCKETS = 50
ATTACHMENT_TIMEOUT_S = 10  # push-server's config::ATTACHMENT_COMPLETION_TIMEOUT


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


def test_attachments_that_stop_coming_close_the_connection_after_the_completion_timeout(processes):
    """One frame of ten declared, then only heartbeat answers: the parser alone looked at
    the timeout only when another frame came, so the frame stayed pinned as long as the
    attacker stayed (vendor/socketioxide patch 0001 arms a timer)."""
    node = PushServer(processes, env={"API_TOKEN": "t"}).start()
    ws = attacker(node.url)
    assert send_frames(ws, 1) == 1
    started = time.monotonic()
    wait_until(lambda: closed(ws), ATTACHMENT_TIMEOUT_S + 3, "the connection closed by the completion timer")
    took = time.monotonic() - started
    print(f"\nattachments: 1 of 10 sent, then idle -> closed after {took:.1f} s (timeout {ATTACHMENT_TIMEOUT_S} s)")
    assert took >= ATTACHMENT_TIMEOUT_S - 1, f"closed after {took:.1f} s, before the timeout"
