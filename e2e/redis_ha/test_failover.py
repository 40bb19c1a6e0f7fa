"""Redis without a single point of failure (#23), with both of Redis's own failover
mechanisms (real redis-server processes):
- Sentinel: a primary, two replicas and three Sentinels; the push-server nodes follow
  the primary the Sentinels name (PUSH_REDIS_SENTINELS);
- Redis Cluster: three primaries with two replicas each (`redis-cli --cluster create`);
  the nodes follow the primary owning the slot of their keys (PUSH_REDIS_CLUSTER); once
  more with every connection over TLS (rediss://, the test's own CA).
Two nodes answer 202 only once a replica has the message too (PUSH_REDIS_MIN_REPLICAS=1).
A publisher sends 50 numbered messages a second, retrying every 503 with its
Idempotency-Key; the primary is SIGKILLed mid-stream. Every message answered 202 reaches
every official client (WebSocket and long-polling) exactly once and in order; the
publishes stall for at most 5 s; nobody is told continuity broke. Then the old primary
comes back as a replica: nothing is repeated."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import subprocess
import time
from urllib.parse import quote

import pytest

from harness import NodeClients, PushServer, contract, wait_until
from harness.continuity import ROOMS, RetryingPublisher, check_after_the_stream
from harness.redis_cluster import RedisClusterSet
from harness.redis_sentinel import SentinelSet

API_TOKEN = "ha-token"
RATE = 50
DEFAULTS = contract()["defaults"]


TOPOLOGIES = {"sentinel": SentinelSet, "cluster": RedisClusterSet,
              # Every connection TLS (rediss://, PUSH_REDIS_CA_FILE): seeds, primary, bus.
              "cluster-tls": functools.partial(RedisClusterSet, tls=True)}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_primary_killed_mid_stream_loses_and_repeats_nothing(processes, topology):
    redis = TOPOLOGIES[topology](processes).start()
    env = {"API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 5000, "HISTORY_TTL_SECONDS": 300,
           "REDIS_MIN_REPLICAS": 1, **redis.env()}
    nodes = [PushServer(processes, redis_url=redis.url, node_id=n, env=env).start() for n in "ab"]
    swarm_spec = {"rooms": ROOMS, "reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 500}
    ws = NodeClients(processes, {"url": nodes[0].url, "transports": ["websocket"], "count": 3, **swarm_spec},
                     name="ws")
    polling = NodeClients(processes, {"url": nodes[1].url, "transports": ["polling"], "count": 3, **swarm_spec},
                          name="polling")
    ws.wait_ready()
    polling.wait_ready()
    old_primary = redis.primary()
    with RetryingPublisher([n.admin_url for n in nodes], API_TOKEN, RATE) as publisher:
        wait_until(lambda: len(publisher.accepted) >= 5 * RATE, 20, "5 s of 202s")
        redis.kill(old_primary)
        killed_at = time.monotonic()
        killed_wall = time.time()
        new_primary = wait_until(lambda: (p := redis.primary()) not in (None, old_primary) and p, 20,
                                 f"the {topology} promoting a replica")
        promoted_s = time.monotonic() - killed_at
        wait_until(lambda: publisher.answered_at and publisher.answered_at[-1] > killed_at, 20,
                   "a 202 after the kill")
        first_202_s = next(t for t in publisher.answered_at if t > killed_at) - killed_at
        at = len(publisher.accepted)
        wait_until(lambda: len(publisher.accepted) >= at + 10 * RATE, 30, "10 s of 202s on the new primary")

        # The old primary comes back as a replica of the new one: nothing is repeated.
        redis.restart_as_replica(old_primary)
        wait_until(lambda: redis.info(old_primary).get("master_link_status") == "up", 20,
                   "the old primary in sync as a replica")
        at = len(publisher.accepted)
        wait_until(lambda: len(publisher.accepted) >= at + 2 * RATE, 20, "2 s more")
    check_after_the_stream(lambda body: nodes[0].publish(body, API_TOKEN), (ws, polling), publisher)
    gap = publisher.longest_gap()
    assert gap <= 5.0, f"no 202 for {gap:.1f} s"
    failovers = [n.metric("REDIS_FAILOVERS") for n in nodes]
    assert all(f >= 1 for f in failovers), failovers
    # Each node names the primary it uses now, and when it moved there.
    for node in nodes:
        assert node.metric("REDIS_PRIMARY", address=f"127.0.0.1:{new_primary}") == 1, node.metrics()
        assert node.metric("REDIS_LAST_FAILOVER") >= killed_wall - 1, node.metric("REDIS_LAST_FAILOVER")
    print(f"\n{topology}: primary {old_primary} SIGKILLed: promoted {new_primary} after {promoted_s:.1f} s, "
          f"first 202 again after {first_202_s:.1f} s, longest stretch without a 202 {gap:.1f} s; "
          f"{len(publisher.accepted)} answered 202 ({publisher.retries} retries with the same key, "
          f"{len(publisher.refused)} given up), every one received once, in order, by 6 clients; "
          f"old primary back as a replica, nothing repeated")


def test_the_same_idempotency_key_is_delivered_once_with_the_same_offset(processes, redis_server):
    node = PushServer(processes, redis_url=redis_server.url, node_id="a",
                      env={"API_TOKEN": API_TOKEN, "HISTORY_MAX_MESSAGES": 100, "HISTORY_TTL_SECONDS": 60}).start()
    client = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ["news"]})
    client.wait_ready()
    body = {"event": "m", "data": "once", "room": "news"}
    first = node.publish(body, API_TOKEN, headers={"Idempotency-Key": "order-1"})
    again = node.publish(body, API_TOKEN, headers={"Idempotency-Key": "order-1"})
    other = node.publish({**body, "data": "twice"}, API_TOKEN, headers={"Idempotency-Key": "order-2"})
    assert first.status_code == again.status_code == other.status_code == 202, (first.text, again.text)
    assert first.json()["offset"] == again.json()["offset"] != other.json()["offset"]
    bad = node.publish(body, API_TOKEN, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"], bad.text
    got = [e["data"] for e in client.settle("m", 2)]
    assert got == ["once", "twice"], got


def signed_cookie(sid: str, secret: str) -> str:
    """express-session's cookie for session `sid` (cookie-signature: base64 HMAC-SHA256,
    padding stripped, URI-encoded)."""
    signature = base64.b64encode(hmac.new(secret.encode(), sid.encode(), hashlib.sha256).digest())
    return f"{DEFAULTS['SESSION_COOKIE']}={quote('s:' + sid + '.' + signature.decode().rstrip('='), safe='')}"


def test_a_shared_session_on_another_cluster_primary_is_read_there(processes):
    """Only this cluster's keys share a slot: a web app's session key (connect-redis on the
    same Redis Cluster) lands on any primary, and the node reads it where MOVED says."""
    redis = RedisClusterSet(processes).start()
    ours = redis.primary()
    sid = next(f"sid-{n}" for n in range(1000)
               if redis.primary_of(redis.slot(f"{DEFAULTS['SESSION_PREFIX']}sid-{n}")) not in (None, ours))
    key = f"{DEFAULTS['SESSION_PREFIX']}{sid}"
    stored = subprocess.run(["redis-cli", "-c", "-p", str(ours), "--no-auth-warning", "-a", redis.password,
                             "SET", key, json.dumps({"cookie": {}, "passport": {"user": "alice"}})],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    assert stored == "OK", stored
    assert "MOVED" in redis.cli(ours, "GET", key), "the session must live on another primary than ours"
    node = PushServer(processes, redis_url=redis.url, node_id="a",
                      env={"API_TOKEN": API_TOKEN, "SESSION_SECRET": "keyboard cat", **redis.env()}).start()
    client = NodeClients(processes, {"url": node.url, "transports": ["websocket"],
                                     "headers": {"Cookie": signed_cookie(sid, "keyboard cat")}})
    client.wait_ready()
    assert node.publish({"event": "dm", "data": "hi alice", "user": "alice"}, API_TOKEN).status_code == 202
    assert [e["data"] for e in client.settle("dm", 1)] == ["hi alice"]
    unknown = NodeClients(processes, {"url": node.url, "transports": ["websocket"],
                                      "headers": {"Cookie": signed_cookie("sid-unknown", "keyboard cat")}})
    [error] = unknown.wait("connect_error")
    assert "unknown or expired session" in error["message"], error
