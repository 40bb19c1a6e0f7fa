"""Scenario 2: cross-node delivery. Room, user and broadcast publishes, through the HTTP
API and through the Redis channel, reach every addressed client exactly once, whichever
node it is on; official JS clients and python-socketio clients side by side."""

from __future__ import annotations

import secrets
import threading
import time

import jwt
import socketio

from locallib import LocalCluster, Swarm, manifest, wait_until

JWT_SECRET = secrets.token_hex(16)


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


class PyClient:
    """A python-socketio client recording every `msg` it receives."""

    def __init__(self, url: str, user: str, transports: list[str]):
        self.got: list = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("msg", self._on_msg)
        self.sio.connect(url, auth={"token": token(user)}, transports=transports, wait_timeout=10)
        ack = self.sio.call("subscribe", {"rooms": ["news"]}, timeout=10)
        assert ack.get("joined") == ["news"], ack

    def _on_msg(self, data):
        with self.lock:
            self.got.append(data["id"])

    def ids(self) -> list:
        with self.lock:
            return list(self.got)


def test_room_user_broadcast_reach_each_client_once(tmp_path):
    spec = manifest("fanout", 3, 4, "cookie")
    spec["spec"]["auth"] = {"jwt": {"secretRef": {"name": "e2e-jwt", "key": "secret"}}}
    # The local-mode secrets convention: PUSHCLUSTER_SECRET_<NAME>_<KEY>.
    env = {"PUSHCLUSTER_SECRET_E2E_JWT_SECRET": JWT_SECRET}
    with LocalCluster(tmp_path, spec, env=env) as cluster:
        common = {"url": cluster.endpoint, "withCredentials": True, "rooms": ["news"]}
        alice = Swarm({**common, "count": 9, "auth": {"token": token("alice")}})
        bob = Swarm({**common, "count": 6, "transports": ["polling"], "auth": {"token": token("bob")}})
        py = []
        try:
            alice.wait_ready()
            bob.wait_ready()
            wait_until(lambda: len(alice.of("subscribed")) == 9 and len(bob.of("subscribed")) == 6, 15, "subscriptions")
            py = [PyClient(cluster.endpoint, "carol", ["websocket"]),
                  PyClient(cluster.endpoint, "carol", ["polling"]),
                  PyClient(cluster.endpoint, "carol", ["polling"])]
            spread = {n["name"]: cluster.connections(n) for n in cluster.nodes("ready")}
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

            def ids_of(swarm: Swarm) -> list[list]:
                return [sorted(d["id"] for d in got) for got in swarm.received("msg").values()]

            def all_fenced() -> bool:
                lists = ids_of(alice) + ids_of(bob) + [c.ids() for c in py]
                return all("fence" in ids for ids in lists)

            wait_until(all_fenced, 20, "the fence broadcast at every client")
            for i, ids in enumerate(ids_of(alice)):
                assert ids == want["alice"], f"alice client {i}: {ids}"
            for i, ids in enumerate(ids_of(bob)):
                assert ids == want["bob"], f"bob client {i}: {ids}"
            for i, client in enumerate(py):
                assert sorted(client.ids()) == want["carol"], f"python client {i}: {client.ids()}"
        finally:
            for client in py:
                client.sio.disconnect()
            alice.close()
            bob.close()
