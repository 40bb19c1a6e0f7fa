"""The WebSocket write window (`PUSH_WRITE_WINDOW_MS`) with the official JS client: a
socket that just wrote holds what is queued next until a window after that write, then
everything queued meanwhile arrives, once and in order (engineioxide's unit tests count
the writes); a window out of range is refused at start."""

import subprocess

from harness import NodeClients, contract, require_binary
from harness.push_suite import API_TOKEN

WINDOW_MS = 300
MESSAGES = 50


def test_a_busy_socket_gets_its_messages_once_a_window_in_order(processes, start_node):
    node = start_node(WRITE_WINDOW_MS=WINDOW_MS)
    client = NodeClients(processes, {"url": node.url, "rooms": ["w"], "transports": ["websocket"]})
    client.wait_ready()

    def publish(n: int) -> None:
        response = node.publish({"event": "tick", "data": {"n": n}, "room": "w"}, API_TOKEN)
        assert response.status_code == 202, response.text

    # An idle socket is written at once; the window starts with that write...
    publish(0)
    client.settle("tick", 1, quiet=0)
    # ...and what is queued within it waits for its end, then goes out together.
    for n in range(1, MESSAGES):
        publish(n)
    events = client.settle("tick", MESSAGES)
    assert [e["data"]["n"] for e in events] == list(range(MESSAGES))
    # The client stamps events with the host's wall clock (Date.now(), whole ms). Without
    # a window the second message follows the first as soon as this test has seen the
    # first and published again (~50 ms); with it, not before the window that began with
    # the first one's write has passed. The margin covers the ms rounding and the first
    # message's way from the write to the client's handler on a busy machine.
    gap_ms = events[1]["t"] - events[0]["t"]
    assert gap_ms >= WINDOW_MS - 50, f"the second message came {gap_ms} ms after the first"


def test_a_write_window_out_of_range_is_refused_at_start():
    binary = require_binary("push-server", "PUSH_SERVER_BIN")
    names = contract()["env"]
    result = subprocess.run([binary], env={names["WRITE_WINDOW_MS"]: "5000"}, capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 2, result.stderr
    assert "--write-window-ms" in result.stderr and "0..=1000" in result.stderr, result.stderr
