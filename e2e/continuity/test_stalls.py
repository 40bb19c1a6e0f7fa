"""The continuity guarantee at its edges (#22): stalls.

- A client that stops reading in the middle of a long replay (its process stopped right
  as it reconnects) must be cut at the transport, come back by itself with its pid and
  offset, and end with everything once, in order. It used to stay connected but parked
  out of its rooms for good ("replay stopped: the client is not reading", paused 8 s),
  or to be sent a socket.io disconnect ("io server disconnect": the official client does
  not reconnect after that) when more was delivered meanwhile than the node's catch-up
  ring holds (paused 3 s under heavy broadcast).
- A node whose fan-out log reader resumes after entries trimmed meanwhile (the log keeps
  ~10,000 entries; the node was stopped while 12,000 were appended) must see the gap,
  count it (`push_fanout_gaps_total`) and cut its sockets, which recover from room
  history. Its client used to miss ~2,000 log entries silently: no disconnect, no
  `continuity_broken`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

import pytest
import requests

from harness import NodeClients, PushServer, contract, fanout_mode, wait_until
from harness.continuity import offset_key, publish_all

API_TOKEN = "stall-token"
SERVER_DISCONNECT = "io server disconnect"  # socket.io's reason: the client does not reconnect


class Paced:
    """Publishes `body(k)` at `rate` a second from `threads` keep-alive sessions while
    entered (at most `limit` seconds); `results` maps k to (status, offset)."""

    def __init__(self, base_url: str, body: Callable[[int], dict], rate: float, threads: int = 2,
                 limit: float = 60):
        self.url = base_url + contract()["paths"]["PUBLISH"]
        self.body, self.rate, self.threads, self.limit = body, rate, threads, limit
        self.results: dict[int, tuple[int | None, str | None]] = {}
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in range(threads)]

    def run(self, first: int) -> None:
        start = time.monotonic()
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {API_TOKEN}"
            k = first
            while not self.stop.is_set() and time.monotonic() - start < self.limit:
                try:
                    response = session.post(self.url, json=self.body(k), timeout=10)
                    offset = response.json().get("offset") if response.status_code == 202 else None
                    self.results[k] = (response.status_code, offset)
                except requests.RequestException:
                    self.results[k] = (None, None)
                k += self.threads
                self.stop.wait(max(0.0, start + k / self.rate - time.monotonic()))

    def accepted(self) -> list[str]:
        return [o for s, o in self.results.values() if s == 202]

    def __enter__(self) -> "Paced":
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join()


def received(client: NodeClients, *events: str) -> list[str]:
    """Offsets of the `events` the client got, in the order it got them."""
    return [e["offset"] for e in client.of("event") if e["event"] in events]


def check_once_in_offset_order(got: list[str], owed: set[str], what: str) -> None:
    twice = sorted({o for o in got if got.count(o) > 1}, key=offset_key)
    assert not twice, f"{what}: {len(twice)} delivered twice: {twice[:10]}"
    keys = [offset_key(o) for o in got]
    late = [got[i + 1] for i in range(len(keys) - 1) if keys[i] >= keys[i + 1]]
    assert not late, f"{what}: out of offset order: {late[:10]}"
    missing = sorted(owed - set(got), key=offset_key)
    assert not missing, f"{what}: missed {len(missing)} of {len(owed)} 202'd messages: {missing[:10]}"


# Big enough that the replay (4,500 x ~3 KB = ~13.7 MB, within the 16 MB budget) cannot
# all sit in the kernel's socket buffers while the client is stopped.
MISSED = 4_500
PAD = "x" * 3_000


@pytest.mark.parametrize("pause, broadcast_rate", [(8, 100), (3, 500)],
                         ids=["paused-8s", "paused-3s-under-heavy-broadcast"])
def test_a_client_paused_during_a_long_replay_comes_back_and_misses_nothing(processes, redis_server, pause,
                                                                            broadcast_rate):
    node = PushServer(processes, redis_url=redis_server.url, node_id="a", env={
        "API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 10_000, "HISTORY_TTL_SECONDS": 300,
        "SEND_BUFFER_MESSAGES": 64}).start()
    # A fixed reconnect delay: the test stops the process during it (see below).
    client = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["news"],
                                     "dataBytes": True, "reconnection": True, "reconnectionDelay": 1000,
                                     "reconnectionDelayMax": 1000, "randomizationFactor": 0}, name="paused")
    client.wait_ready()
    first = node.publish({"event": "news", "room": "news", "data": {"n": -1}}, API_TOKEN)
    assert first.status_code == 202, first.text
    owed = {first.json()["offset"]}
    client.wait("event", event="news")

    pid = client.proc.pid
    try:
        # A network blip; the client is stopped before its reconnect timer (1 s) fires,
        # so it stays away while 4,500 big messages are published to its room.
        client.send({"cmd": "drop"})
        wait_until(lambda: client.of("disconnect"), 5, "the drop", interval=0.002)
        os.kill(pid, signal.SIGSTOP)
        assert len(client.of("open")) == 1, "the client came back before it could be kept away"
        results = publish_all(node.admin_url, API_TOKEN, [
            {"event": "news", "room": "news", "data": {"n": k, "pad": PAD}} for k in range(MISSED)])
        refused = [s for s, _ in results if s != 202]
        assert not refused, f"{len(refused)} publishes refused: {refused[:5]}"
        owed |= {o for _, o in results}
        with Paced(node.admin_url, lambda k: {"event": "bcast", "broadcast": True, "data": {"k": k}},
                   broadcast_rate) as background:
            os.kill(pid, signal.SIGCONT)
            # Stopped again the moment it reconnects (its CONNECT with pid and offset is out):
            # the node replays into a connection nobody reads.
            wait_until(lambda: len(client.of("open")) >= 2, 10, "the reconnection", interval=0.001)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(pause)  # scenario time: the client does not read for `pause` seconds
            os.kill(pid, signal.SIGCONT)
            time.sleep(1.5)  # scenario time: broadcasts go on while it catches up
    finally:
        os.kill(pid, signal.SIGCONT)
    owed |= set(background.accepted())

    end = node.publish({"event": "news", "room": "news", "data": {"n": "end"}}, API_TOKEN)
    assert end.status_code == 202, end.text
    end_offset = end.json()["offset"]
    owed.add(end_offset)

    def server_disconnects() -> list[dict]:
        return [d for d in client.of("disconnect") if d["reason"] == SERVER_DISCONNECT]
    try:
        wait_until(lambda: end_offset in received(client, "news") or server_disconnects(), 20,
                   "the live message published at the end")
    except AssertionError:
        pass
    stopped = node.log().count("replay stopped")
    broken = client.events(contract()["socket"]["CONTINUITY_BROKEN"])
    got = received(client, "news", "bcast")
    print(f"\nclient paused {pause} s mid-replay ({MISSED} missed messages of ~3 KB, broadcasts at "
          f"{broadcast_rate}/s): {len(got)} received of {len(owed)} owed; disconnects "
          f"{[d['reason'] for d in client.of('disconnect')]}; connects "
          f"{[c['recovered'] for c in client.of('connected')]} (recovered); continuity_broken {len(broken)}; "
          f"node logged 'replay stopped' {stopped} time(s)")
    assert not server_disconnects(), (
        f"the node disconnected the client at the socket.io level ({SERVER_DISCONNECT!r}): the official "
        f"client does not reconnect after that; it should have cut the transport")
    assert end_offset in received(client, "news"), (
        f"stuck: the client is connected but never got a live message of its room within 20 s "
        f"(parked out of its rooms; node logged 'replay stopped' {stopped} time(s), "
        f"{len(client.of('disconnect')) - 1} disconnect(s) after the blip's)")
    if not broken:
        check_once_in_offset_order(got, owed, "the paused client")


NODE_STOPPED_FOR = 12_000  # appended while node b is stopped: more than the log keeps (~10,000)


def test_a_node_paused_past_the_logs_length_cuts_and_its_clients_recover(processes, redis_server):
    env = {"API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 20_000, "HISTORY_TTL_SECONDS": 300}
    a = PushServer(processes, redis_url=redis_server.url, node_id="a", env=env).start()
    b = PushServer(processes, redis_url=redis_server.url, node_id="b", env=env).start()
    client = NodeClients(processes, {"url": b.url, "transports": ["websocket"], "rooms": ["news"],
                                     "reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500},
                         name="on-b")
    client.wait_ready()
    first = a.publish({"event": "news", "room": "news", "data": {"n": -1}}, API_TOKEN)
    assert first.status_code == 202, first.text
    owed = [first.json()["offset"]]
    client.wait("event", event="news")

    # Every other message to a room the client is not in: the log (every message) is
    # trimmed past node b's position, while what the client itself missed (6,000) stays
    # within one recovery's replay budget (10,000 messages), so it can recover it all.
    bodies = [{"event": "news", "room": "news", "data": {"n": k}} if k % 2 == 0
              else {"event": "other", "room": "elsewhere", "data": {"n": k}} for k in range(NODE_STOPPED_FOR)]
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        if fanout_mode() == "interest":
            # By interest, node b's room channel would hold what it misses (kernel and
            # Redis buffers) and it would get it all. With its connection dropped (as Redis
            # drops a subscriber past its output limit), b must notice on its reconnect
            # that the log was trimmed past its position.
            redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        started = time.monotonic()
        results = publish_all(a.admin_url, API_TOKEN, bodies, threads=4)
        took = time.monotonic() - started
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    refused = [s for s, _ in results if s != 202]
    assert not refused, f"{len(refused)} publishes refused: {refused[:5]}"
    owed += [o for body, (_, o) in zip(bodies, results) if body["room"] == "news"]
    log_length = int(redis_server.cli("XLEN", f"{contract()['defaults']['REDIS_CHANNEL']}:log"))

    end = a.publish({"event": "news", "room": "news", "data": {"n": "end"}}, API_TOKEN)
    assert end.status_code == 202, end.text
    owed.append(end.json()["offset"])
    wait_until(lambda: owed[-1] in received(client, "news"), 30, "the message published after node b resumed")
    time.sleep(0.5)  # not readiness: a window in which a duplicate would show
    got = received(client, "news")
    missing = sorted(set(owed) - set(got), key=offset_key)
    disconnects = client.of("disconnect")
    reconnects = client.of("connected")[1:]
    broken = client.events(contract()["socket"]["CONTINUITY_BROKEN"])
    print(f"\nnode b stopped while {NODE_STOPPED_FOR} messages were appended ({took:.1f} s; log now "
          f"{log_length} entries): client on b got {len(got)} of {len(owed)} news messages, "
          f"{len(missing)} missing, {len(got) - len(set(got))} twice; disconnects "
          f"{[d['reason'] for d in disconnects]}; reconnects recovered={[c['recovered'] for c in reconnects]}; "
          f"continuity_broken {len(broken)}")
    assert not missing, (
        f"silent gap: the client on node b missed {len(missing)} of {len(owed)} messages of its room "
        f"({len(disconnects)} disconnect(s), {len(broken)} continuity_broken): node b resumed its log read "
        f"after entries trimmed meanwhile; first missing {missing[:5]}")
    check_once_in_offset_order(got, set(owed), "the client on node b")
    assert not broken, broken
    assert disconnects and all(d["reason"] != SERVER_DISCONNECT for d in disconnects), disconnects
    assert reconnects and reconnects[-1]["recovered"] is True, reconnects
    gaps = wait_until(lambda: b.metric("FANOUT_GAPS"), 10, "node b counting the gap in its log read")
    lag_name = contract()["metrics"]["FANOUT_LAG"]
    lag = [v for n, _, v in b.metrics() if n == lag_name]
    print(f"node b: {gaps:.0f} fan-out gap(s) counted, clients cut and recovered; {lag_name} {lag}")
    assert lag, f"node b does not expose {lag_name}"
