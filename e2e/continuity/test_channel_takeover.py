"""The Redis publish channel across a change of holder (#22): one node at a time (the
lease holder) appends what backends PUBLISH. Its node stopped (SIGSTOP) past the 3 s
lease while a backend publishes 100 messages a second: the other node takes the lease
and goes on from where the stopped one left off; the stopped one, resumed, appends
nothing it no longer holds. Every message a node received (PUBLISH answered >= 1)
reaches the client exactly once, in publish order."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

from harness import NodeClients, PushServer, contract, wait_until
from harness.continuity import paced

API_TOKEN = "channel-token"
CHANNEL = contract()["defaults"]["REDIS_CHANNEL"]
RATE = 100


def resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


class ChannelPublisher:
    """PUBLISHes `{"n": k}` to room `news` on one Redis connection at RATE; records the
    k whose PUBLISH answered >= 1 (a node received it: owed to the client)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.reader = self.sock.makefile("rb")
        self.received: list[int] = []
        self.unreceived: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for k in paced(RATE, self.stop):
            body = json.dumps({"event": "seq", "data": {"n": k}, "room": "news"})
            self.sock.sendall(resp("PUBLISH", CHANNEL, body))
            reply = self.reader.readline()
            assert reply.startswith(b":"), reply
            (self.received if int(reply[1:]) >= 1 else self.unreceived).append(k)

    def __enter__(self) -> "ChannelPublisher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_a_holder_stopped_past_its_lease_neither_loses_nor_repeats(processes, redis_server):
    env = {"API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 5000, "HISTORY_TTL_SECONDS": 300}
    nodes = {n: PushServer(processes, redis_url=redis_server.url, node_id=n, env=env).start() for n in "ab"}
    owner_key = f"{CHANNEL}:owner"

    def holder() -> str | None:
        owner = redis_server.cli("GET", owner_key)
        return next((n for n in nodes if owner.startswith(f"{n}/")), None)

    first = wait_until(holder, 10, "a node holding the publish channel")
    second = next(n for n in nodes if n != first)
    client = NodeClients(processes, {"url": nodes[second].url, "transports": ["websocket"], "rooms": ["news"]})
    client.wait_ready()
    stopped = nodes[first].proc
    with ChannelPublisher(redis_server.port) as publisher:
        wait_until(lambda: len(publisher.received) >= RATE, 10, "a second of channel messages")
        os.kill(stopped.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_until(lambda: holder() == second, 15, f"node {second} taking the lease")
            took_over_s = time.monotonic() - stopped_at
            at = len(publisher.received)
            # A second more with the first holder still stopped, then it resumes and
            # believes for a moment that it still holds the lease.
            wait_until(lambda: len(publisher.received) >= at + RATE, 10, "a second under the new holder")
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        at = len(publisher.received)
        wait_until(lambda: len(publisher.received) >= at + 2 * RATE, 10, "two seconds after the resume")
    assert nodes[first].publish({"event": "fence", "data": 1, "broadcast": True}, API_TOKEN).status_code == 202
    client.wait("event", event="fence", timeout=20)
    got = [e["data"]["n"] for e in client.events("seq")]
    twice = sorted({n for n in got if got.count(n) > 1})
    missing = sorted(set(publisher.received) - set(got))
    assert not twice, f"appended twice: {len(twice)} messages, e.g. {twice[:10]}"
    assert not missing, f"received by a node (PUBLISH >= 1) but never delivered: {len(missing)}, e.g. {missing[:10]}"
    assert got == sorted(got), "out of publish order"
    print(f"\nchannel holder {first} stopped {took_over_s:.1f} s until {second} took the lease: "
          f"{len(publisher.received)} messages received by a node, {len(got)} delivered, 0 twice, 0 missing, in order "
          f"({len(publisher.unreceived)} PUBLISHes answered 0)")
