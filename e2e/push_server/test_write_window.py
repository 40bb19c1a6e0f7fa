"""The WebSocket write window (`PUSH_WRITE_WINDOW_MS`) with the official JS client: a
message waits for the window, then everything queued meanwhile arrives, once and in
order (engineioxide's unit tests count the writes); a window out of range is refused at
start."""

import subprocess
import time

from harness import NodeClients, contract, require_binary
from harness.push_suite import API_TOKEN

WINDOW_MS = 300
MESSAGES = 50


def test_messages_wait_for_the_window_then_arrive_once_and_in_order(processes, start_node):
    node = start_node(WRITE_WINDOW_MS=WINDOW_MS)
    client = NodeClients(processes, {"url": node.url, "rooms": ["w"], "transports": ["websocket"]})
    client.wait_ready()
    published_ms = time.time() * 1000
    for n in range(MESSAGES):
        response = node.publish({"event": "tick", "data": {"n": n}, "room": "w"}, API_TOKEN)
        assert response.status_code == 202, response.text
    events = client.settle("tick", MESSAGES)
    assert [e["data"]["n"] for e in events] == list(range(MESSAGES))
    # The client stamps each event with the same host's wall clock (Date.now(), whole
    # ms): the first cannot arrive before the window that held it back has passed
    # (without one it takes about a millisecond). The margin covers the ms rounding.
    waited_ms = events[0]["t"] - published_ms
    assert waited_ms >= WINDOW_MS - 5, f"the first message came {waited_ms:.1f} ms after the publish"


def test_a_write_window_out_of_range_is_refused_at_start():
    binary = require_binary("push-server", "PUSH_SERVER_BIN")
    names = contract()["env"]
    result = subprocess.run([binary], env={names["WRITE_WINDOW_MS"]: "5000"}, capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 2, result.stderr
    assert "--write-window-ms" in result.stderr and "0..=1000" in result.stderr, result.stderr
