"""The continuity guarantee at its edges (#22). Connection state recovery promises a
client that comes back either everything it missed, once and in order, with
`recovered === true`, or `recovered === false` and a `continuity_broken` event saying
what to resync. Each test here holds it at one edge where it did not hold (each failed
before #22's fix):

- a client back with a narrower token (a room revoked) is not given the revoked room's
  missed or later messages: `continuity_broken` lists it under `revoked`;
- a client's own `socket.disconnect()` ends its session (its key leaves Redis): a later
  connect is a new session (`session-unknown`), nothing replayed;
- a room's history stream that expired and was created again while the client was away
  is not replayed as if complete: the room is reported broken (`history-expired`);
- a client that was connected and quiet for longer than the TTL, then away for a second,
  recovers (an expired stream it was live for is no gap);
- subscribing again to a room the socket is in does not move its recovery position past
  messages written to a connection that then died;
- a subscribe whose session write failed says so (`unrecoverable` in its ack);
- a subscribe sent while a long replay is still running does not join its rooms
  mid-replay (no live message sent to the socket before the replay is through; every
  message once, in order): it waits for the replay, or is refused and succeeds later.

Real redis-server, real push-server, the official socket.io client (clients/client.js):
`{"cmd": "drop"}` closes the transport under the socket (a network blip), `"disconnect"`
is the app's own `socket.disconnect()`."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import jwt

from harness import NodeClients, PushServer, contract, wait_until
from harness.continuity import offset_key, publish_all

API_TOKEN = "edges-token"
SECRET = "edges-secret-0123456789abcdef0123456"
BROKEN = contract()["socket"]["CONTINUITY_BROKEN"]
SUBSCRIBE = contract()["socket"]["SUBSCRIBE"]
CHANNEL = contract()["defaults"]["REDIS_CHANNEL"]
FENCES = itertools.count()


# --- helpers -----------------------------------------------------------------------


def start_node(processes, redis_server, **env) -> PushServer:
    return PushServer(processes, redis_url=redis_server.url, node_id="a",
                      env={"API_TOKEN": API_TOKEN, **env}).start()


def connect_client(processes, url: str, **spec) -> NodeClients:
    client = NodeClients(processes, {"url": url, "transports": ["websocket"], **spec})
    client.wait_ready()
    return client


def user_token(rooms: list[str]) -> str:
    return jwt.encode({"sub": "u", "exp": int(time.time() + 600), "rooms": rooms}, SECRET, algorithm="HS256")


def subscribe(client: NodeClients, rooms: list[str]) -> dict:
    """Emits subscribe and returns its ack."""
    before = len(client.of("ack", event=SUBSCRIBE))
    client.send({"cmd": "emit", "event": SUBSCRIBE, "data": {"rooms": rooms}, "ack": True})
    return client.wait("ack", before + 1, event=SUBSCRIBE)[before]["ack"]


def publish(node: PushServer, room: str | None, data, event: str = "m") -> str:
    """Publishes to `room` (None: a namespace broadcast); returns the message's offset."""
    target = {"room": room} if room is not None else {"broadcast": True}
    response = node.publish({"event": event, "data": data, **target}, API_TOKEN)
    assert response.status_code == 202, response.text
    return response.json()["offset"]


def received(client: NodeClients, event: str = "m") -> list:
    return [e["data"] for e in client.events(event)]


def drop(client: NodeClients, node: PushServer) -> None:
    """A network blip: the transport closed under the socket; returns once the node has
    seen the connection go."""
    before = len(client.of("disconnect"))
    client.send({"cmd": "drop"})
    client.wait("disconnect", before + 1)
    wait_until(lambda: node.connections() == 0, 10, "the node to see the client's connection gone")


def reconnect(client: NodeClients) -> dict:
    """`socket.connect()` again (the library sends its pid and offset); the connected line."""
    before = len(client.of("connected"))
    client.send({"cmd": "connect"})
    return client.wait("connected", before + 1, timeout=20)[before]


def fence(node: PushServer, client: NodeClients) -> None:
    """A broadcast published now and waited for: whatever the node was going to replay or
    deliver to the client before it has arrived."""
    before = len(client.events("fence"))
    publish(node, None, next(FENCES), event="fence")
    wait_until(lambda: len(client.events("fence")) > before, 20, "the fence")


def broken_events(client: NodeClients) -> list:
    return received(client, BROKEN)


def session_keys(redis_server) -> list[str]:
    return [k for k in redis_server.cli("KEYS", f"{CHANNEL}:s:*").splitlines() if k]


def stream_key(room: str) -> str:
    return f"{CHANNEL}:h:/:r:{room}"


class Proxy:
    """A TCP proxy in front of a node, for what the node writes to a client:

    - `hold()`: keeps instead of passing on what the node writes to the connections
      open at that moment (a network dying under them: the node's writes succeed, the
      client never sees them); `held()` is what it kept;
    - `throttle(rate)`: connections opened from now on get at most `rate` bytes a
      second (a slow link; the proxy reads the node's side through a small receive
      buffer, so the kernel holds little); `unthrottle()` lifts it from every one.

    Either side closing closes both."""

    def __init__(self, port: int):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.states: list[dict] = []
        self.rate: int | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 10)  # before connect: no autotuning
            try:
                upstream.connect(self.target)
            except OSError:  # the node is gone: so is this connection
                upstream.close()
                downstream.close()
                continue
            with self.lock:
                state = {"held": None, "rate": self.rate}
                self.states.append(state)
            threading.Thread(target=self._pump, args=(downstream, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, state), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict | None) -> None:
        try:
            while True:
                rate = state["rate"] if state else None
                data = src.recv(4096 if rate else 65536)
                if not data:
                    break
                with self.lock:
                    held = state["held"] if state else None
                    if held is not None:
                        held.extend(data)
                        continue
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # the slow link's pace
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv
                except OSError:
                    pass
                s.close()

    def hold(self) -> None:
        with self.lock:
            for state in self.states:
                if state["held"] is None:
                    state["held"] = bytearray()

    def held(self) -> bytes:
        with self.lock:
            return b"".join(bytes(s["held"]) for s in self.states if s["held"] is not None)

    def throttle(self, rate: int) -> None:
        with self.lock:
            self.rate = rate

    def unthrottle(self) -> None:
        with self.lock:
            self.rate = None
            for state in self.states:
                state["rate"] = None

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


# --- the edges -----------------------------------------------------------------------


def test_recovery_with_a_narrower_token_does_not_keep_revoked_rooms(processes, redis_server):
    """A client in team:1 and team:2 drops; while it is away both rooms get a message and
    its app fetches a new token that allows team:2 only. Reconnecting with it, the client
    must not get team:1 back: `recovered === false`, `continuity_broken` with
    `revoked: ["team:1"]` (reason `rooms-not-allowed`: nothing else broke), team:2's
    missed message replayed, team:1's not, and team:1's live messages no longer
    delivered."""
    node = start_node(processes, redis_server, JWT_SECRET=SECRET, HISTORY_MAX_MESSAGES=100,
                      HISTORY_TTL_SECONDS=60)
    client = connect_client(processes, node.url, auth={"token": user_token(["team:1", "team:2"])})
    ack = subscribe(client, ["team:1", "team:2"])
    assert ack.get("joined") == ["team:1", "team:2"], ack
    publish(node, "team:1", "before-1")
    publish(node, "team:2", "before-2")
    wait_until(lambda: len(received(client)) == 2, 10, "a message in each room")

    drop(client, node)
    publish(node, "team:1", "missed-1")
    publish(node, "team:2", "missed-2")
    client.send({"cmd": "auth", "auth": {"token": user_token(["team:2"])}})
    again = reconnect(client)
    fence(node, client)
    publish(node, "team:1", "live-1")
    publish(node, "team:2", "live-2")
    fence(node, client)

    got, broken = received(client), broken_events(client)
    print(f"\nnarrower token: recovered={again['recovered']}, {BROKEN}={broken}, received {got}")
    assert again["recovered"] is False, (
        f"recovered (socket.recovered === true) with a token that no longer allows team:1: "
        f"the session's revoked room came back; received {got}")
    assert len(broken) == 1, f"one {BROKEN} event expected: {broken}"
    assert broken[0].get("revoked") == ["team:1"], f"{BROKEN} does not name team:1 as revoked: {broken[0]}"
    assert broken[0].get("reason") == "rooms-not-allowed", broken[0]
    assert "missed-1" not in got, f"team:1's missed message replayed to a token without team:1: {got}"
    assert got.count("missed-2") == 1, f"team:2's missed message not replayed once: {got}"
    assert "live-1" not in got, f"team:1's live messages still delivered after the revocation: {got}"
    assert got.count("live-2") == 1, f"team:2 no longer live: {got}"


def test_a_client_disconnect_ends_its_session(processes, redis_server):
    """The app's own `socket.disconnect()` is not a blip: as in socket.io, it ends the
    session. Its key leaves Redis, and a later `socket.connect()` (the library still sends
    the old pid) gets `recovered === false`, `continuity_broken` `session-unknown` with
    `rooms: null`, and not the message published while it was gone."""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=60)
    client = connect_client(processes, node.url)
    subscribe(client, ["news"])
    publish(node, "news", "before")
    client.wait("event", event="m")
    wait_until(lambda: len(session_keys(redis_server)) == 1, 10, "the client's session in Redis")

    client.send({"cmd": "disconnect"})
    client.wait("disconnect")
    wait_until(lambda: node.connections() == 0, 10, "the node to see the client gone")
    try:
        wait_until(lambda: not session_keys(redis_server), 5, "the session key removed")
    except AssertionError:
        pass  # asserted below, after what the client saw
    left_behind = session_keys(redis_server)
    publish(node, "news", "while-gone")
    again = reconnect(client)
    fence(node, client)

    got, broken = received(client), broken_events(client)
    print(f"\nclient disconnect: session keys left {len(left_behind)}, recovered={again['recovered']}, "
          f"{BROKEN}={broken}, received {got}")
    assert again["recovered"] is False, (
        f"recovered (socket.recovered === true) after the client's own socket.disconnect(): its session "
        f"outlived it; received {got}")
    assert len(broken) == 1 and broken[0].get("reason") == "session-unknown", broken
    assert broken[0].get("rooms") is None, broken[0]
    assert "while-gone" not in got, f"a message published after socket.disconnect() was replayed: {got}"
    assert not left_behind, f"session key(s) left in Redis 5 s after socket.disconnect(): {left_behind}"


def test_a_recreated_history_stream_is_not_replayed_as_complete(processes, redis_server):
    """The client drops after one message; m0 is published to news; the client stays away
    until news's stream expired (TTL 3 s), then `late` recreates the stream (and a
    broadcast is sent). The stream now holds `late` only: replaying it as all the client
    missed would lose m0 silently. Expected: `recovered === false`, `continuity_broken`
    naming news (`history-expired`), neither m0 nor `late` replayed, news still live."""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=3)
    client = connect_client(processes, node.url)
    subscribe(client, ["news"])
    publish(node, "news", "first")
    client.wait("event", event="m")

    drop(client, node)
    publish(node, "news", "m0")
    wait_until(lambda: redis_server.cli("EXISTS", stream_key("news")) == "0", 15, "news's history stream to expire")
    publish(node, "news", "late")
    publish(node, None, "bcast", event="b")
    again = reconnect(client)
    fence(node, client)
    before_live = received(client)
    publish(node, "news", "live")
    wait_until(lambda: "live" in received(client), 10, "a live message to news")

    got, broken = received(client), broken_events(client)
    print(f"\nrecreated stream: recovered={again['recovered']}, {BROKEN}={broken}, received {got}, "
          f"broadcasts {received(client, 'b')}")
    assert again["recovered"] is False, (
        f"recovered (socket.recovered === true) from news's stream recreated after it expired: replayed "
        f"{before_live[1:]} as complete, m0 lost silently")
    assert len(broken) == 1, broken
    assert "news" in (broken[0].get("rooms") or []) and broken[0].get("reason") == "history-expired", broken[0]
    assert "m0" not in got, got
    assert "late" not in before_live, f"the recreated stream's partial history was replayed: {before_live}"
    assert got == ["first", "live"], got


def test_a_quiet_client_recovers_after_a_short_blip(processes, redis_server):
    """A client connected and quiet for longer than the TTL (its room's stream expired
    while it was live: nothing was lost) drops for about a second; one message is
    published meanwhile. It must recover: `recovered === true`, no `continuity_broken`,
    the message replayed once. (The node judges the time away from when the client was
    last known to have received everything: its last heartbeat window, here 1 s.)"""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=5,
                      PING_INTERVAL_MS=500, PING_TIMEOUT_MS=500)
    client = connect_client(processes, node.url)
    subscribe(client, ["news"])
    publish(node, "news", "first")
    client.wait("event", event="m")
    time.sleep(7)  # the scenario: connected and quiet for longer than the 5 s TTL
    assert redis_server.cli("EXISTS", stream_key("news")) == "0", "news's stream should have expired by now"

    drop(client, node)
    time.sleep(1)  # the scenario: away for about a second
    publish(node, "news", "during-blip")
    again = reconnect(client)
    fence(node, client)

    got, broken = received(client), broken_events(client)
    print(f"\nquiet client, 1 s blip: recovered={again['recovered']}, {BROKEN}={broken}, received {got}")
    assert again["recovered"] is True and not broken, (
        f"a client away 1 s did not recover (recovered={again['recovered']}) and was told {broken}: "
        f"streams that expired while it was connected counted as a gap")
    assert got == ["first", "during-blip"], f"not replayed exactly once: {got}"


def test_resubscribing_a_room_keeps_its_recovery_position(processes, redis_server):
    """The node writes D to a client's connection, and the client subscribes to news (it
    is already in) again, but the connection is dead under it (a proxy holds what the
    node writes): D and the ack never arrive, the client drops. Its offset is before D, so
    recovery owes it D, unless the re-subscribe moved news's join position (which recovery
    starts from when it is later than the offset) past D. Expected: `recovered === true`
    and D replayed once, then live messages."""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=60)
    with Proxy(node.port) as proxy:
        client = connect_client(processes, proxy.url)
        assert subscribe(client, ["news"]).get("joined") == ["news"]
        publish(node, "news", "msg-A")
        client.wait("event", event="m")

        proxy.hold()
        publish(node, "news", "msg-D")
        wait_until(lambda: b"msg-D" in proxy.held(), 10, "the node writing D to the client's connection")
        client.send({"cmd": "emit", "event": SUBSCRIBE, "data": {"rooms": ["news"]}, "ack": True})
        wait_until(lambda: b"joined" in proxy.held(), 10, "the node acking the re-subscribe (held)")
        assert received(client) == ["msg-A"]

        drop(client, node)
        again = reconnect(client)
        publish(node, "news", "msg-C")
        wait_until(lambda: "msg-C" in received(client), 10, "a live message after the reconnect")
        fence(node, client)

    got, broken = received(client), broken_events(client)
    print(f"\nre-subscribe then a dead connection: recovered={again['recovered']}, {BROKEN}={broken}, "
          f"received {got}")
    assert again["recovered"] is True and not broken, (again, broken)
    assert got == ["msg-A", "msg-D", "msg-C"], (
        f"D, written to a connection that died, was not replayed: the re-subscribe moved news's recovery "
        f"position past it; received {got}")


def test_a_subscribe_acked_without_its_session_write_says_so(processes, redis_server):
    """The node joins a room live, then records it in the socket's session in Redis; when
    that write fails (here: the session key replaced by a string, so HSET answers
    WRONGTYPE) a reconnect may not restore the room. The ack says so:
    `{"joined": ["news"], "unrecoverable": ["news"]}`; the room is live meanwhile."""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=100, HISTORY_TTL_SECONDS=60)
    client = connect_client(processes, node.url)
    keys = wait_until(lambda: len(session_keys(redis_server)) == 1 and session_keys(redis_server), 10,
                      "the client's session in Redis")
    assert redis_server.cli("SET", keys[0], "x") == "OK"
    ack = subscribe(client, ["news"])
    publish(node, "news", "live")
    wait_until(lambda: "live" in received(client), 10, "a live message to the joined room")

    print(f"\nsubscribe with a failed session write: ack {ack}")
    assert ack.get("joined") == ["news"], ack
    assert ack.get("unrecoverable") == ["news"], (
        f"subscribe acked as if recoverable though its session write failed (WRONGTYPE): {ack}")


# The replay must outlast the node's 10 s wait for it. What leaves the node's send buffer
# (1,024 messages) by then: what its socket's kernel buffer holds (~3 MB behind the
# proxy's small receive window) and what the link passes (~2.5 MB); the backlog is more.
BACKLOG = 3800  # messages of 4 KB missed: 15 MB, within one recovery's replay budget (16 MiB)
PAD = "x" * 4000
# Bytes a second: slow, yet fast enough that the node's writer is woken (~600 KB freed in
# its socket buffer) well within the 5 s a replay waits for room before it cuts a client.
LINK_RATE = 250_000
SLOW_SECONDS = 11.0  # how long the link stays slow after the subscribe: past the node's 10 s wait
LIVE_RATE = 50  # messages a second to `other` while the client comes back


def test_a_subscribe_during_a_long_replay_never_reorders_or_repeats(processes, redis_server):
    """A client in news comes back over a slow link (a proxy passing 250 KB/s) to a
    backlog of 3,800 messages of 4 KB while a backend publishes 50 a second to `other`;
    right in its connect handler (recovered) it subscribes to news and other. Its replay
    lasts longer than the node would wait for it (the link is slow for 11 s, then fast).
    The subscribe must not join the rooms mid-replay, where live messages would overtake
    the replay or be dropped for the send buffer the replay fills: no live message sent to
    the socket while its replay runs (none dropped for it), every message once, offsets
    strictly increasing, every message of news, and of other every one after the first it
    got. The subscribe is acked after the replay, or refused (an `error` about the
    recovery) and a later one succeeds.

    The live messages go to `other`, not to news: a live message to news during a replay
    is sent by the replay's catch-up, which a 1,024-message send buffer full of the
    replay's tail cannot take (the node cuts the client then, to recover again)."""
    node = start_node(processes, redis_server, HISTORY_MAX_MESSAGES=BACKLOG + 1000, HISTORY_TTL_SECONDS=300)
    with Proxy(node.port) as proxy:
        client = NodeClients(processes, {"url": proxy.url, "transports": ["websocket"], "rooms": ["news"],
                                         "dataBytes": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500,
                                         "subscribeOnRecover": ["news", "other"]})
        client.wait_ready()
        news = [publish(node, "news", {"n": -1})]
        client.wait("event", event="m")

        drop(client, node)
        results = publish_all(node.admin_url, API_TOKEN, [{"event": "m", "room": "news", "data": {"n": k, "pad": PAD}}
                                                   for k in range(BACKLOG)])
        assert all(status == 202 for status, _ in results), {s for s, _ in results}
        news += [offset for _, offset in results]

        stop = threading.Event()
        other: list[str] = []

        def backend() -> None:
            k, start = 0, time.monotonic()
            while not stop.is_set():
                other.append(publish(node, "other", {"live": k}, event="o"))
                k += 1
                stop.wait(max(0.0, start + k / LIVE_RATE - time.monotonic()))

        publisher = threading.Thread(target=backend, daemon=True)
        publisher.start()
        try:
            proxy.throttle(LINK_RATE)
            client.send({"cmd": "reconnection", "on": True})  # from now on a cut client comes back by itself
            again = reconnect(client)
            client.wait("emitted", event=SUBSCRIBE)
            time.sleep(SLOW_SECONDS)  # the scenario: the link stays slow this long
            # Mid-replay (checked below): no live message may have been sent to it yet.
            drops_mid_replay = node.metric("SLOW_CONSUMER_DROPS")
            news_mid_replay = len(client.events("m"))
            cuts_mid_replay = len(client.of("disconnect")) - 1
            proxy.unthrottle()
            try:
                wait_until(lambda: set(news) <= {e["offset"] for e in client.events("m")}, 20, "every news message")
            except AssertionError:
                pass  # what is missing is asserted below
        finally:
            proxy.unthrottle()
            stop.set()
            publisher.join()
        fence(node, client)

        lines = [line for line in client.of("event") if line["event"] in ("m", "o")]
        offsets = [line["offset"] for line in lines]
        got_news = [line["offset"] for line in lines if line["event"] == "m"]
        got_other = [line["offset"] for line in lines if line["event"] == "o"]
        acks = [a for a in client.of("ack", event=SUBSCRIBE) if a.get("onRecover")]
        twice = sorted({o for o in offsets if offsets.count(o) > 1}, key=offset_key)
        backwards = [(a, b) for a, b in zip(offsets, offsets[1:]) if offset_key(a) >= offset_key(b)]
        missing_news = sorted(set(news) - set(got_news), key=offset_key)
        other_owed = other[other.index(got_other[0]):] if got_other and got_other[0] in other else []
        gaps_other = sorted(set(other_owed) - set(got_other), key=offset_key)
        print(f"\nsubscribe during a {BACKLOG}-message replay: recovered={again['recovered']}; after "
              f"{SLOW_SECONDS:.0f} s at {LINK_RATE // 1000} KB/s the client had {news_mid_replay} news messages and "
              f"the node had dropped {drops_mid_replay:.0f} live ones for it; on-recover subscribe acks "
              f"{[(round((a['t'] - again['t']) / 1000, 1), a['ack']) for a in acks]}; received {len(got_news)} of "
              f"{len(news)} news, {len(got_other)} of {len(other)} other: {len(twice)} twice, {len(backwards)} out "
              f"of order, {len(missing_news)} news missing, {len(gaps_other)} other skipped, "
              f"{len(client.of('disconnect')) - 1} cut(s)")
        assert again["recovered"] is True, again
        # The scenario held: the replay could not be over (what the client had, plus the
        # send buffer and a 4 MB kernel buffer, is less than the backlog), and no cut.
        assert news_mid_replay + 1024 + (4 << 20) // len(PAD) < BACKLOG and cuts_mid_replay == 0, (
            f"scenario did not hold: the replay may have ended within {SLOW_SECONDS} s "
            f"({news_mid_replay} of {BACKLOG} received, {cuts_mid_replay} cuts)")
        assert drops_mid_replay == 0, (
            f"{drops_mid_replay:.0f} live messages were sent to the socket while its replay was still running "
            f"(dropped for the send buffer the replay fills): the subscribe joined the rooms mid-replay")
        assert not twice, f"{len(twice)} messages delivered twice: {twice[:5]}"
        assert not backwards, (
            f"{len(backwards)} times an offset not after the previous one (live messages overtook the replay): "
            f"{backwards[:3]}")
        assert not missing_news, f"{len(missing_news)} of {len(news)} news messages missing: {missing_news[:5]}"
        assert not gaps_other, f"{len(gaps_other)} messages of other skipped once it was joined: {gaps_other[:5]}"
        for ack in acks:
            refused = "error" in ack["ack"]
            assert refused and "recover" in ack["ack"]["error"] or ack["ack"].get("joined") == ["news", "other"], ack
        # Whether the first was acked, refused, or its ack was lost: a subscribe now succeeds.
        assert subscribe(client, ["other"]).get("joined") == ["other"], "a subscribe after the replay"
        publish(node, "other", "in-other", event="o2")
        publish(node, "news", "in-news", event="m2")
        client.wait("event", event="o2")
        client.wait("event", event="m2")
