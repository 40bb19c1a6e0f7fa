"""Both directions in local mode (#28): `push-operator local` on a PushCluster with JWT auth,
a backend, presence events and the Admin UI, its secrets from local mode's secrets (env
`PUSHCLUSTER_SECRET_<NAME>_<KEY>`), three nodes. Official clients on two nodes: the
backend gets a signed event and its answer's publish reaches the other node; a client
publish and a join event cross nodes; the room presence API counts every node; a token
refresh keeps the connection; the disconnect API kicks a user on another node."""

from __future__ import annotations

import time

import jwt
import requests

from harness.backend import SIGNING_KEY, Backend
from harness.local import CONTRACT, LocalCluster, clients, manifest

JWT_SECRET = "local-jwt-secret-with-32-bytes-at-least"
SOCKET = CONTRACT["socket"]


def token(sub: str, ttl: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, "publish": ["lobby"]}, JWT_SECRET, algorithm="HS256")


def test_a_backend_presence_client_publish_refresh_and_kick_across_local_nodes(tmp_path, processes):
    backend = Backend()
    backend.answers = {"order": lambda event, _: (200, {"result": {"ok": event["data"]}, "publish": [
        {"room": "lobby", "event": "ordered", "data": event["data"]}]}, 0)}
    spec = manifest("both", 3, 2, "cookie")
    spec["spec"].update({
        "auth": {"jwt": {"secretRef": {"name": "jwt", "key": "secret"}}},
        "backend": {"url": backend.url, "signingSecretRef": {"name": "orders", "key": "key"},
                    "events": [{"name": "order"}]},
        "presence": {"events": True},
    })
    env = {"PUSHCLUSTER_SECRET_JWT_SECRET": JWT_SECRET, "PUSHCLUSTER_SECRET_ORDERS_KEY": SIGNING_KEY}
    try:
        with LocalCluster(tmp_path, spec, env=env) as cluster:
            nodes = cluster.nodes()
            bob = clients(processes, {"url": f"http://{nodes[1]['client']}", "transports": ["websocket"],
                                      "auth": {"token": token("bob")}, "rooms": ["lobby"]}, name="bob")
            bob.wait_ready()
            ann = clients(processes, {"url": f"http://{nodes[0]['client']}", "transports": ["polling"],
                                      "auth": {"token": token("ann", 60)}, "rooms": ["lobby"]}, name="ann")
            ann.wait_ready()
            assert bob.wait("event", event=SOCKET["PRESENCE_JOIN"])[0]["data"] == {"room": "lobby", "user": "ann"}

            ann.send({"cmd": "emit", "event": "order", "data": {"item": 3}, "ack": True})
            assert ann.wait("ack", event="order", timeout=15)[0]["ack"]["result"] == {"ok": {"item": 3}}
            [request] = backend.of("order")
            assert request["signed"] and request["user"] == "ann"
            assert [e["data"] for e in bob.settle("ordered", 1)] == [{"item": 3}]

            ann.send({"cmd": "emit", "event": SOCKET["PUBLISH"], "ack": True,
                      "data": {"room": "lobby", "event": "say", "data": {"text": "hi bob"}}})
            assert "offset" in ann.wait("ack", event=SOCKET["PUBLISH"])[0]["ack"]
            assert [e["data"] for e in bob.settle("say", 1)] == [{"text": "hi bob"}]

            auth = {"Authorization": f"Bearer {cluster.token}"}
            presence = requests.get(cluster.api_endpoint + CONTRACT["paths"]["ROOM_PRESENCE"].replace("{room}", "lobby"),
                                    headers=auth, timeout=10).json()
            assert (presence["sockets"], presence["users"], presence["partial"], presence["asked"]) == \
                (2, ["ann", "bob"], False, 3), presence

            ann.send({"cmd": "emit", "event": SOCKET["REFRESH_TOKEN"], "ack": True, "data": {"token": token("ann", 600)}})
            assert "exp" in ann.wait("ack", event=SOCKET["REFRESH_TOKEN"])[0]["ack"]

            kicked = requests.post(cluster.api_endpoint + CONTRACT["paths"]["DISCONNECT"], headers=auth, timeout=10,
                                   json={"user": "bob", "reason": "bye"})
            assert kicked.status_code == 202, kicked.text
            assert bob.wait("event", event=SOCKET["DISCONNECT_REASON"])[0]["data"] == {"reason": "bye"}
            assert bob.wait("disconnect")[0]["reason"] == "io server disconnect"
            assert ann.of("disconnect") == [], "the refreshed connection stays"
    finally:
        backend.stop()
