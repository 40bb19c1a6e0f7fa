"""Raw protocol access for tests that act as an attacker would: a socket.io connection
over a bare WebSocket (no client library smoothing anything), and a process's RSS."""

from __future__ import annotations

from pathlib import Path

import websocket

from .core import contract


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MiB (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def socketio_websocket(url: str) -> websocket.WebSocket:
    """Engine.IO 4 over WebSocket, then a socket.io CONNECT to `/`; returns once connected."""
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + contract()["paths"]["SOCKET_IO"] + "?EIO=4&transport=websocket", timeout=10)
    assert ws.recv().startswith("0")  # Engine.IO open
    ws.send("40")
    while (frame := ws.recv()) == "2":  # a PING may come first once pingInterval passed
        ws.send("3")
    assert frame.startswith("40"), frame  # socket.io CONNECT
    return ws
