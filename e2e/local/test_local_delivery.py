"""Scenario 2: cross-node delivery. Room, user and broadcast publishes, through the HTTP
API and through the Redis channel, reach every addressed client exactly once, whichever
node it is on; official JS clients and python-socketio clients side by side."""

from __future__ import annotations

import secrets
import time

import jwt

from harness import NodeClients, PyClient, wait_until
from harness.local import READY, LocalCluster, clients, manifest

JWT_SECRET = secrets.token_hex(16)


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


def python_client(url: str, user: str, transport: str) -> PyClient:
    """A python-socketio client of `user`, subscribed to `news`."""
    client = PyClient()
    assert client.connect(url, token(user), [transport]), client.error_message()
    ack = client.subscribe("news")
    assert ack.get("joined") == ["news"], ack
    return client


def msg_ids(client: PyClient) -> list:
    return [d["id"] for d in client.received("msg")]


def test_room_user_broadcast_reach_each_client_once(tmp_path, processes):
    spec = manifest("fanout", 3, 4, "cookie")
    spec["spec"]["auth"] = {"jwt": {"secretRef": {"name": "e2e-jwt", "key": "secret"}}}
    # The local-mode secrets convention: PUSHCLUSTER_SECRET_<NAME>_<KEY>.
    env = {"PUSHCLUSTER_SECRET_E2E_JWT_SECRET": JWT_SECRET}
    with LocalCluster(tmp_path, spec, env=env) as cluster:
        common = {"url": cluster.endpoint, "withCredentials": True, "rooms": ["news"]}
        alice = clients(processes, {**common, "count": 9, "auth": {"token": token("alice")}})
        bob = clients(processes, {**common, "count": 6, "transports": ["polling"], "auth": {"token": token("bob")}})
        py = []
        try:
            alice.wait_ready()
            bob.wait_ready()
            wait_until(lambda: len(alice.of("subscribed")) == 9 and len(bob.of("subscribed")) == 6, 15, "subscriptions")
            py = [python_client(cluster.endpoint, "carol", transport) for transport in ("websocket", "polling", "polling")]
            spread = {n["name"]: cluster.connections(n) for n in cluster.nodes(READY)}
            assert len(spread) == 3 and all(spread.values()), f"clients not on every node: {spread}"

            publishes = [
                ("http-room", {"room": "news"}), ("http-user", {"user": "alice"}), ("http-all", {"broadcast": True}),
                ("redis-room", {"room": "news"}), ("redis-user", {"user": "bob"}), ("redis-all", {"broadcast": True}),
            ]
            for msg_id, target in publishes:
                body = {"event": "msg", "data": {"id": msg_id}, **target}
                if msg_id.startswith("http"):
                    response = cluster.publish(body)
                    assert response.status_code == 202, response.text
                else:
                    cluster.publish_redis(body)
            # A last broadcast through every path: once it arrived, any duplicate of an
            # earlier message would have arrived too.
            cluster.publish({"event": "msg", "data": {"id": "fence"}, "broadcast": True})

            every = ["http-room", "http-all", "redis-room", "redis-all", "fence"]
            want = {"alice": sorted(every + ["http-user"]), "bob": sorted(every + ["redis-user"]), "carol": sorted(every)}

            def ids_of(swarm: NodeClients) -> list[list]:
                return [sorted(d["id"] for d in got) for got in swarm.received("msg").values()]

            def all_fenced() -> bool:
                lists = ids_of(alice) + ids_of(bob) + [msg_ids(c) for c in py]
                return all("fence" in ids for ids in lists)

            wait_until(all_fenced, 20, "the fence broadcast at every client")
            for i, ids in enumerate(ids_of(alice)):
                assert ids == want["alice"], f"alice client {i}: {ids}"
            for i, ids in enumerate(ids_of(bob)):
                assert ids == want["bob"], f"bob client {i}: {ids}"
            for i, client in enumerate(py):
                assert sorted(msg_ids(client)) == want["carol"], f"python client {i}: {msg_ids(client)}"
        finally:
            for client in py:
                client.close()
            alice.close()
            bob.close()
