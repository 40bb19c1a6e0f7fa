"""What the continuity suites (e2e/continuity) share: a numbered publisher and the
exactly-once-in-order check of what every client received."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from typing import Callable
from urllib.parse import urlsplit

import requests

from .core import contract, wait_until

BROKEN = contract()["socket"]["CONTINUITY_BROKEN"]
# Messages a second, alternating room `news` and user `u1`.
RATE = 100
ROOMS = ["news", "user:u1"]


def paced(rate: float, stop: threading.Event):
    """Yields 0, 1, 2, ... at `rate` a second (on schedule, not after each body's time)
    until `stop` is set."""
    k, start = 0, time.monotonic()
    while not stop.is_set():
        yield k
        k += 1
        stop.wait(max(0.0, start + k / rate - time.monotonic()))


class Publisher:
    """Publishes `{"n": k}` (event `seq`) at RATE through `publish`, alternating room
    `news` and user `u1`; remembers which were answered 202 (owed to every client) and
    which were sent at all (a 503 or a dropped connection may still have been taken)."""

    def __init__(self, publish: Callable[[dict], requests.Response]):
        self.publish = publish
        self.accepted: list[int] = []
        self.refused: list[int] = []
        self.sent: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for k in paced(RATE, self.stop):
            target = {"room": "news"} if k % 2 == 0 else {"user": "u1"}
            self.sent.append(k)
            try:
                status = self.publish({"event": "seq", "data": {"n": k}, **target}).status_code
            except requests.RequestException:
                status = None
            (self.accepted if status == 202 else self.refused).append(k)

    def __enter__(self) -> "Publisher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def offset_key(text: str) -> tuple[int, int]:
    """An event's offset (`<ms>-<seq>`) as a sortable key."""
    ms, seq = text.split("-")
    return int(ms), int(seq)


def fence(cluster, swarm) -> None:
    """A last broadcast, waited for on every client: what was published before it has
    arrived wherever it was going to."""
    assert cluster.publish({"event": "fence", "data": 1, "broadcast": True}).status_code == 202
    wait_until(lambda: len(swarm.events("fence")) >= swarm.spec["count"], 20, "the fence everywhere")


def check_after_the_stream(publish_fence: Callable[[dict], requests.Response], swarms,
                           publisher: "Publisher | RetryingPublisher") -> None:
    """After a stream through an outage: a fence broadcast (answered 202) waited for on
    every client, then for each: every 202'd message once and in order, no
    `continuity_broken`, and every reconnect recovered."""
    fenced = publish_fence({"event": "fence", "data": 1, "broadcast": True})
    assert fenced.status_code == 202, fenced.text
    for swarm in swarms:
        count = swarm.spec.get("count", 1)
        wait_until(lambda s=swarm: len(s.events("fence")) >= count, 20, "the fence everywhere")
        check_exactly_once_in_order(swarm, publisher)
        assert swarm.events(BROKEN) == [], swarm.events(BROKEN)
        for i in range(count):
            later = swarm.of("connected", i=i)[1:]
            assert all(e["recovered"] is True for e in later), f"client {i} reconnected without recovering: {later}"


def check_exactly_once_in_order(swarm, publisher: Publisher) -> dict[int, list[int]]:
    """Every client got every 202'd message, nothing twice, in offset order (which is
    publish order for the 202'd ones: each was sent after the previous one's 202), each
    with its offset; returns what each got."""
    accepted, sent = set(publisher.accepted), set(publisher.sent)
    out = {}
    for i in range(swarm.spec["count"]):
        lines = swarm.events("seq", i=i)
        got = [e["data"]["n"] for e in lines]
        twice = sorted({n for n in got if got.count(n) > 1})
        assert not twice, f"client {i}: delivered twice: {twice[:20]}"
        assert all(e.get("offset") for e in lines), f"client {i}: an event without its offset"
        offsets = [offset_key(e["offset"]) for e in lines]
        assert all(a < b for a, b in zip(offsets, offsets[1:])), f"client {i}: offsets out of order"
        owed = [n for n in got if n in accepted]
        assert owed == sorted(owed), f"client {i}: 202'd messages out of publish order"
        missing = sorted(accepted - set(got))
        assert not missing, f"client {i}: missed {len(missing)} of {len(accepted)} 202'd messages: {missing[:20]}"
        assert set(got) <= sent
        out[i] = got
    return out


def metric_total(node: dict, name: str) -> float:
    """Sum of a metric's samples on a local-mode node (its admin port)."""
    text = requests.get(f"http://{node['admin']}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def publish_all(base_url: str, token: str, bodies: list[dict], threads: int = 4) -> list[tuple[int | None, str | None]]:
    """Publishes `bodies` through the API of the node at `base_url`, `threads` at a time
    (each over one keep-alive connection, http.client: about twice what requests does);
    returns (status, offset) per body, in the bodies' order (status None: no answer).
    Bodies published by different threads reach the log in no set order: compare offsets."""
    address = urlsplit(base_url)
    path = contract()["paths"]["PUBLISH"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    results: list[tuple[int | None, str | None]] = [(None, None)] * len(bodies)

    def work(first: int) -> None:
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        try:
            for k in range(first, len(bodies), threads):
                try:
                    conn.request("POST", path, body=json.dumps(bodies[k]), headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()  # reconnects on the next request
                    continue
                offset = json.loads(answer).get("offset") if response.status == 202 else None
                results[k] = (response.status, offset)
        finally:
            conn.close()

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


class RetryingPublisher:
    """Publishes `{"n": k}` at `rate` a second to the nodes at `urls` in turn, alternating
    room `news` and user `u1`, each with the Idempotency-Key `<prefix>-<k>`, retrying a 503 (or a
    dropped request) until a 202; records which were answered 202 and when."""

    def __init__(self, urls: list[str], token: str, rate: float):
        self.urls, self.token, self.rate = urls, token, rate
        # Keys of a publisher of its own: another run's `m-<k>` within the key's TTL would
        # be answered with that run's offset and not delivered again (as it should).
        self.key_prefix = f"m-{uuid.uuid4().hex[:8]}"
        self.accepted: list[int] = []
        self.sent: list[int] = []
        self.refused: list[int] = []  # given up (never 202): may be delivered once
        self.answered_at: list[float] = []
        self.retries = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.session = requests.Session()

    def publish(self, k: int) -> bool:
        body = {"event": "seq", "data": {"n": k}, **({"room": "news"} if k % 2 == 0 else {"user": "u1"})}
        url = self.urls[k % len(self.urls)]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                response = self.session.post(url + contract()["paths"]["PUBLISH"], json=body, timeout=5,
                                             headers={"Authorization": f"Bearer {self.token}",
                                                      "Idempotency-Key": f"{self.key_prefix}-{k}"})
                if response.status_code == 202:
                    return True
                assert response.status_code == 503, response.text
            except requests.RequestException:
                pass
            self.retries += 1
            self.stop.wait(0.1)
        return False

    def run(self) -> None:
        for k in paced(self.rate, self.stop):
            self.sent.append(k)
            if self.publish(k):
                self.accepted.append(k)
                self.answered_at.append(time.monotonic())
            else:
                self.refused.append(k)

    def longest_gap(self) -> float:
        times = self.answered_at
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def __enter__(self) -> "RetryingPublisher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
