"""TLS to Redis (#23): a `rediss://` Redis (a real redis-server with a TLS port only) is
used when its certificate chains to PUSH_REDIS_CA_FILE, and refused, saying why, when it
does not. (Failover over TLS: `test_failover.py[cluster-tls]`.)"""

from __future__ import annotations

from harness import NodeClients, PushServer, wait_until
from harness.ports import reserve_port
from harness.redis_tls import make_tls

API_TOKEN = "tls-token"
PASSWORD = "tls-secret"


def test_a_rediss_redis_is_used_only_with_a_ca_that_signed_it(processes):
    tls = make_tls(processes.log_dir)
    stranger = make_tls(processes.log_dir, "stranger")
    port = reserve_port()
    data = processes.log_dir / "redis-tls"
    data.mkdir()
    redis = processes.start(["redis-server", "--bind", "127.0.0.1", "--port", 0, "--tls-port", port,
                             *tls.server_args(), "--dir", data, "--save", "", "--requirepass", PASSWORD],
                            name="redis-tls")
    url = f"rediss://127.0.0.1:{port}"

    def node(node_id: str, ca) -> PushServer:
        return PushServer(processes, redis_url=url, node_id=node_id,
                          env={"API_TOKEN": API_TOKEN, "REDIS_PASSWORD": PASSWORD, "REDIS_CA_FILE": ca})

    # Ready only once Redis answered it (over TLS; the node retries until redis-server listens).
    trusting = node("a", tls.ca).start()
    assert redis.poll() is None
    client = NodeClients(processes, {"url": trusting.url, "transports": ["websocket"], "rooms": ["news"]})
    client.wait_ready()
    assert trusting.publish({"event": "m", "data": "over tls", "room": "news"}, API_TOKEN).status_code == 202
    assert [e["data"] for e in client.settle("m", 1)] == ["over tls"]

    wary = node("b", stranger.ca).start(ready=False)
    wait_until(lambda: "invalid peer certificate" in wary.log(), 15, "b refusing the unknown certificate")
    # Not ready, so no Service sends it clients (its client port opens only once Redis
    # answers).
    assert wary.readyz() != 200, "ready without Redis"
