"""Client events handed to the backend (#28, `PUSH_BACKEND_*`, set by `spec.backend`): real
push-server processes on one real Redis, official socket.io clients, and a small HTTP
backend this test runs on loopback. The backend receives each event once with a valid
signature and its answer is the client's ack (with its join, leave and publish applied);
a refusal, a backend that is down or silent give an error ack within the timeout while
the node stays healthy; a slow backend cannot pile work up on the node (bounded in
flight, per node and per socket); only events declared idempotent are retried."""

import socket
import statistics
import time

import jwt
import pytest
import requests

from harness import NodeClients, contract
from harness.backend import SIGNING_KEY, Backend
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
HISTORY = {"HISTORY_MAX_MESSAGES": 100, "HISTORY_TTL_SECONDS": 60}


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.stop()


def token(sub: str, rooms: list[str]) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "rooms": rooms, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def client(processes, node, sub: str, rooms: list[str], name: str, allowed: list[str] | None = None,
           count: int = 1) -> NodeClients:
    c = NodeClients(processes, {"url": node.url, "auth": {"token": token(sub, allowed or rooms)}, "rooms": rooms,
                                "transports": ["websocket"], "count": count}, name=name)
    c.wait_ready()
    return c


def emit(c: NodeClients, event: str, data, i: int | None = None) -> None:
    c.send({"cmd": "emit", "event": event, "data": data, "ack": True, **({"i": i} if i is not None else {})})


def ask(c: NodeClients, n: int, event: str, data) -> dict:
    emit(c, event, data)
    return c.wait("ack", n, event=event, timeout=15)[n - 1]["ack"]


def backend_env(backend: Backend, events: str, **more) -> dict:
    return {"BACKEND_URL": backend.url, "BACKEND_SECRET": SIGNING_KEY, "BACKEND_EVENTS": events, **more}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_the_backend_gets_each_event_once_signed_and_its_answer_is_the_ack(processes, redis_server, start_node,
                                                                            backend):
    def order(event, _seen):
        user = event["user"]
        return 200, {"result": {"order": event["data"]["item"], "by": user},
                     "join": [f"orders.{user}", "admin"],
                     "publish": [{"room": "orders", "event": "ordered", "data": {"item": event["data"]["item"]}}]}, 0

    backend.answers = {
        "order": order,
        "cancel": lambda event, _: (409, {"error": "nothing to cancel"}, 0),
        "ping": lambda event, _: (200, {"result": "pong"}, 0),
    }
    env = {"JWT_SECRET": SECRET, **HISTORY, **backend_env(backend, "order,cancel,ping")}
    nodes = [start_node(redis_server.url, node_id=n, **env) for n in "ab"]
    members = [client(processes, node, f"m-{node.node_id}", ["orders"], f"member-{node.node_id}")
               for node in nodes]
    ann = client(processes, nodes[0], "ann", [], "ann", allowed=["orders.ann"])

    ack = ask(ann, 1, "order", {"item": 7})
    assert ack["result"] == {"order": 7, "by": "ann"}, ack
    assert ack["joined"] == ["orders.ann"], ack
    assert ack["refused"] == [{"room": "admin", "reason": ack["refused"][0]["reason"]}], \
        "a join the token does not allow is refused, as a subscribe would be"
    assert len(ack["published"]) == 1 and "offset" in ack["published"][0], ack
    for m in members:
        got = m.settle("ordered", 1)
        assert [(e["data"], e["offset"]) for e in got] == [({"item": 7}, ack["published"][0]["offset"])]
    [request] = backend.of("order")
    assert request["signed"] and backend.bad_signatures == 0
    assert (request["user"], request["event"], request["data"]) == ("ann", "order", {"item": 7})
    assert request["sid"] and request["id"]
    # The joined room is the socket's now: a publish to it reaches the client.
    assert nodes[1].publish({"room": "orders.ann", "event": "status", "data": "shipped"}, API_TOKEN
                            ).status_code == 202
    assert [e["data"] for e in ann.settle("status", 1)] == ["shipped"]

    refused = ask(ann, 1, "cancel", {})
    assert refused == {"error": "backend refused (HTTP 409): nothing to cancel"}, refused
    assert nodes[0].metric("BACKEND_EVENTS", result="answered") == 1
    assert nodes[0].metric("BACKEND_EVENTS", result="refused") == 1

    # What the proxy adds to an ack: 200 round trips through the backend against 200 of
    # an event the node answers itself (an empty subscribe), from the same client.
    proxied, local = [], []
    for n in range(200):
        emit(ann, "ping", {})
        line = ann.wait("ack", n + 1, event="ping")[n]
        proxied.append(line["us"] - line["sentUs"])
        emit(ann, "subscribe", {"rooms": []})
        line = ann.wait("ack", n + 1, event="subscribe")[n]
        local.append(line["us"] - line["sentUs"])
    assert all(line["ack"] == {"result": "pong"} for line in ann.of("ack", event="ping"))
    p = lambda xs, q: statistics.quantiles(xs, n=100)[q - 1] / 1000  # noqa: E731
    print(f"\nbackend events: ack through the backend p50 {p(proxied, 50):.2f} ms p99 {p(proxied, 99):.2f} ms; "
          f"answered by the node p50 {p(local, 50):.2f} ms p99 {p(local, 99):.2f} ms; "
          f"added p50 {p(proxied, 50) - p(local, 50):.2f} ms p99 {p(proxied, 99) - p(local, 99):.2f} ms")
    assert len(backend.of("ping")) == 200, "each event once"


def test_a_backend_down_or_silent_gives_an_error_ack_within_the_timeout_and_the_node_stays_healthy(
        processes, redis_server, start_node):
    down = start_node(redis_server.url, node_id="down", BACKEND_URL=f"http://127.0.0.1:{closed_port()}/x",
                      BACKEND_SECRET=SIGNING_KEY, BACKEND_EVENTS="order", BACKEND_TIMEOUT_MS=2000)
    c = client(processes, down, "ann", [], "to-down")
    started = time.monotonic()
    ack = ask(c, 1, "order", {})
    assert ack == {"error": "backend unavailable: cannot connect"}, ack
    assert time.monotonic() - started < 2, "a refused connection is known at once"

    # A backend that accepts connections and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        node = start_node(redis_server.url, node_id="silent",
                          BACKEND_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/x",
                          BACKEND_SECRET=SIGNING_KEY, BACKEND_EVENTS="order", BACKEND_TIMEOUT_MS=500)
        c = client(processes, node, "ann", [], "to-silent")
        started = time.monotonic()
        ack = ask(c, 1, "order", {})
        took = time.monotonic() - started
        assert ack == {"error": "backend did not answer within 500 ms"}, ack
        assert 0.5 <= took < 2, took
        assert node.metric("BACKEND_EVENTS", result="timeout") == 1
        assert node.readyz() == 200
        assert requests.get(node.admin_url + contract()["paths"]["HEALTHZ"], timeout=5).status_code == 200
        print(f"\nbackend events: a silent backend's error ack after {took:.2f} s (timeout 0.5 s)")
    finally:
        silent.close()


def test_a_slow_backend_cannot_exhaust_the_node(processes, redis_server, start_node, backend):
    backend.answers = {"slow": lambda event, _: (200, {"result": "late"}, 2.0)}
    node = start_node(redis_server.url, **backend_env(backend, "slow", BACKEND_MAX_IN_FLIGHT=8))
    crowd = client(processes, node, "crowd", [], "crowd", count=5)
    member = client(processes, node, "m", ["news"], "member")
    started = time.monotonic()
    for i in range(5):
        for _ in range(4):
            emit(crowd, "slow", {}, i=i)
    busy = crowd.wait("ack", 12, event="slow", timeout=5)
    assert all(line["ack"] == {"error": "backend busy: too many events in flight; retry later"} for line in busy), busy
    busy_within = max(line["us"] - line["sentUs"] for line in busy) / 1e6
    assert busy_within < 1, "the events beyond the bound are refused at once, not queued"
    # Meanwhile the node serves everything else.
    api = time.monotonic()
    assert node.publish({"room": "news", "event": "flash", "data": 1}, API_TOKEN).status_code == 202
    member.wait("event", event="flash")
    api_took = time.monotonic() - api
    assert node.readyz() == 200
    acks = crowd.wait("ack", 20, event="slow", timeout=10)
    answered = [line for line in acks if line["ack"] == {"result": "late"}]
    assert len(answered) == 8 and backend.most_in_flight == 8 and len(backend.of("slow")) == 8
    assert node.metric("BACKEND_EVENTS", result="busy") == 12
    print(f"\nbackend events: 20 events at a 2 s backend, bound 8: 8 sent (most in flight {backend.most_in_flight}), "
          f"12 refused within {busy_within * 1000:.0f} ms; a publish delivered meanwhile in {api_took * 1000:.0f} ms; "
          f"all answered after {time.monotonic() - started:.2f} s")

    # One socket alone: at most 4 of its own in flight.
    backend.most_in_flight = 0
    for _ in range(6):
        emit(crowd, "slow", {}, i=0)
    own = [line["ack"] for line in crowd.wait("ack", 26, event="slow", timeout=10)[20:]]
    assert sorted(a.get("error", "") for a in own).count("backend busy: too many events in flight; retry later") == 2
    assert backend.most_in_flight == 4


def test_only_an_idempotent_event_is_retried(processes, redis_server, start_node, backend):
    flaky = lambda event, seen: (503, None, 0) if seen == 1 else (200, {"result": seen}, 0)  # noqa: E731
    backend.answers = {"peek": flaky, "buy": flaky}
    node = start_node(redis_server.url, **backend_env(backend, "peek,buy", BACKEND_IDEMPOTENT_EVENTS="peek"))
    c = client(processes, node, "ann", [], "ann")
    assert ask(c, 1, "peek", {}) == {"result": 2}
    tries = backend.of("peek")
    assert len(tries) == 2 and tries[0]["id"] == tries[1]["id"], "a retry carries the same id"
    assert ask(c, 1, "buy", {}) == {"error": "backend failed: HTTP 503"}
    assert len(backend.of("buy")) == 1, "a non-idempotent event is never sent twice"

