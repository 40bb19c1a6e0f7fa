"""`spec.redis.managed.replicas` in local mode: with 3, a primary, two replicas and three
Sentinels (real redis-server processes) that fail over by Redis's own mechanism. The
primary is SIGKILLed: the Sentinels promote a replica, the supervisor restarts the killed
redis-server on its port as a replica of the new primary, and local mode keeps running.
The push-servers follow the new primary: a message published before and one after the
failover (retried with its idempotency key until a 202) both reach a client once. With
`redis.external.sentinel` (or `.cluster`) local mode points the nodes at a Sentinel set
(or a Redis Cluster) it did not start, and they follow its failover the same way. With the default (1), one redis-server as
always."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import wait_until
from harness.local import CONTRACT, LocalCluster, clients, manifest, record_measurement
from harness.redis_cluster import RedisClusterSet
from harness.redis_sentinel import SentinelSet

MASTER = CONTRACT["defaults"]["REDIS_SENTINEL_MASTER"]
ENV = CONTRACT["env"]
# Sentinel here: down after 2 s, promoted about 3.5 s after the kill (measured).
PROMOTION_BOUND_S = 10


def cli(addr: str, *args: str, password: str | None = None) -> str:
    host, port = addr.rsplit(":", 1)
    auth = ["--no-auth-warning", "-a", password] if password else []
    return subprocess.run(["redis-cli", "-h", host, "-p", port, *auth, *args],
                          capture_output=True, text=True, timeout=5).stdout


def replication(addr: str, password: str) -> dict[str, str]:
    """INFO replication of the redis-server on `addr`, as a dict."""
    lines = cli(addr, "INFO", "replication", password=password).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def named_primary(sentinel: str) -> str | None:
    """`ip:port` the Sentinel on `sentinel` names as the primary now."""
    reply = cli(sentinel, "SENTINEL", "get-master-addr-by-name", MASTER).split()
    return ":".join(reply) if len(reply) == 2 else None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def node_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def replicated(name: str, redis_replicas: int | None) -> dict:
    spec = manifest(name, 2, 2, "address")
    if redis_replicas is not None:
        spec["spec"]["redis"] = {"managed": {"replicas": redis_replicas}}
    return spec


def published_until_accepted(cluster: LocalCluster, data: str, timeout: float = 20) -> None:
    """Publishes `data` to room `news` until a 202, every try with the same idempotency key
    (a 503 while Redis fails over: not confirmed, retried safely)."""
    body = {"event": "m", "data": data, "room": "news", "idempotency_key": f"key-{data}"}
    wait_until(lambda: cluster.publish(body).status_code == 202, timeout, f"a 202 for {data!r}", interval=0.2)


def delivered_once(client, want: list[str]) -> None:
    wait_until(lambda: [e["data"] for e in client.events("m")] == want, 20, f"exactly {want}")


def test_sigkilled_primary_is_failed_over_and_rejoins_as_a_replica(tmp_path, processes):
    with LocalCluster(tmp_path, replicated("ha", 3)) as cluster:
        state = cluster.state()
        password = state["redis"]["password"]
        servers = state["redis_servers"]
        assert Counter(r["role"] for r in servers) == {"primary": 1, "replica": 2, "sentinel": 3}, servers
        primary = next(r for r in servers if r["role"] == "primary")
        replicas = [r["addr"] for r in servers if r["role"] == "replica"]
        sentinels = [r["addr"] for r in servers if r["role"] == "sentinel"]
        assert (primary["addr"], primary["pid"]) == (state["redis"]["addr"], state["redis"]["pid"]), \
            "the redis entry keeps naming the initial primary"
        for sentinel in sentinels:
            assert named_primary(sentinel) == primary["addr"], sentinel
        primary_port = primary["addr"].rsplit(":", 1)[1]
        for replica in replicas:
            info = replication(replica, password)
            assert (info.get("role"), info.get("master_port"), info.get("master_link_status")) == \
                ("slave", primary_port, "up"), f"{replica}: {info}"
        for node in state["nodes"]:
            env = node_env(node["pid"])
            assert sorted(env[ENV["REDIS_SENTINELS"]].split(",")) == sorted(sentinels), env
            assert env[ENV["REDIS_SENTINEL_MASTER"]] == MASTER
            assert env[ENV["REDIS_MIN_REPLICAS"]] == "1"
            assert env[ENV["REDIS_URL"]].startswith(f"redis://{primary['addr']}/")

        client = clients(processes, {"url": cluster.endpoint, "transports": ["websocket"], "rooms": ["news"]})
        client.wait_ready()
        published_until_accepted(cluster, "before")
        killed_at = time.monotonic()
        os.kill(primary["pid"], signal.SIGKILL)

        def promoted() -> str | None:
            named = named_primary(sentinels[0])
            return named if named in replicas else None
        new_primary = wait_until(promoted, PROMOTION_BOUND_S, "a Sentinel naming a replica as the new primary",
                                 interval=0.1)
        record_measurement("redis_failover_seconds_until_promoted", round(time.monotonic() - killed_at, 2))
        wait_until(lambda: all(named_primary(s) == new_primary for s in sentinels), 10,
                   f"every Sentinel naming {new_primary}", interval=0.1)
        assert replication(new_primary, password).get("role") == "master"

        def restarted() -> dict | None:
            entry = next(r for r in cluster.state()["redis_servers"] if r["addr"] == primary["addr"])
            return entry if entry["pid"] != primary["pid"] and alive(entry["pid"]) else None
        entry = wait_until(restarted, 20, "the supervisor restarting the killed redis-server", interval=0.1)
        assert entry["role"] == "replica", entry

        new_port = new_primary.rsplit(":", 1)[1]

        def rejoined() -> bool:
            info = replication(primary["addr"], password)
            return (info.get("role"), info.get("master_port"), info.get("master_link_status")) == \
                ("slave", new_port, "up")
        wait_until(rejoined, 20, f"{primary['addr']} replicating {new_primary}", interval=0.2)
        record_measurement("redis_failover_seconds_until_old_primary_rejoined", round(time.monotonic() - killed_at, 2))

        # The nodes followed the new primary: publishing and delivery go on.
        published_until_accepted(cluster, "after")
        delivered_once(client, ["before", "after"])

        # Local mode as a whole keeps running: the supervisor, nginx, every Redis process,
        # and both nodes.
        assert cluster.proc is not None and cluster.proc.poll() is None, cluster.log_tail()
        after = cluster.state()
        assert after["ready"] and alive(after["nginx"]["pid"]), after
        assert len(after["redis_servers"]) == 6 and all(alive(r["pid"]) for r in after["redis_servers"]), after
        assert after["redis"]["pid"] == entry["pid"], "the redis entry follows its address"
        wait_until(lambda: [n for n in cluster.state()["nodes"] if n["pid"] and alive(n["pid"])], 10,
                   "push-server nodes running")
        assert len(cluster.state()["nodes"]) == 2


def test_one_redis_by_default(tmp_path):
    with LocalCluster(tmp_path, replicated("single", None)) as cluster:
        state = cluster.state()
        assert state["redis_servers"] == [
            {"pid": state["redis"]["pid"], "addr": state["redis"]["addr"], "role": "primary"}]
        assert replication(state["redis"]["addr"], state["redis"]["password"]).get("role") == "master"
        for node in state["nodes"]:
            env = node_env(node["pid"])
            for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_MIN_REPLICAS"):
                assert ENV[name] not in env, f"{ENV[name]} set with one redis-server"
            assert env[ENV["REDIS_URL"]] == f"redis://{state['redis']['addr']}/0?protocol=resp3"

        # Changing the topology needs a restart of local mode: refused, the cluster kept.
        cluster.spec["spec"]["redis"] = {"managed": {"replicas": 3}}
        cluster.write_manifest()
        wait_until(lambda: "restart local mode to change spec.redis.managed.replicas" in cluster.log_tail(200),
                   10, "the edit refused")
        assert cluster.state()["redis_servers"] == state["redis_servers"]
        assert cluster.proc is not None and cluster.proc.poll() is None


def external_sentinel(redis: SentinelSet) -> tuple[dict, dict]:
    """`spec.redis.external` for `redis`, and the node env it must give."""
    return ({"sentinel": {"addresses": redis.sentinels.split(","), "masterName": MASTER}},
            {ENV["REDIS_SENTINELS"]: redis.sentinels, ENV["REDIS_MIN_REPLICAS"]: "1"})


def external_cluster(redis: RedisClusterSet) -> tuple[dict, dict]:
    form = {"cluster": {"addresses": redis.seeds.split(",")}}
    want = {ENV["REDIS_CLUSTER"]: redis.seeds, ENV["REDIS_MIN_REPLICAS"]: "1"}
    if redis.tls:
        # The CA comes from a Secret (here PUSHCLUSTER_SECRET_REDIS_CA_PEM), written to a
        # file as the pod would have it mounted.
        form["tls"] = {"caSecretRef": {"name": "redis-ca", "key": "pem"}}
        want[ENV["REDIS_URL"]] = f"rediss://{redis.seeds.split(',')[0]}/0?protocol=resp3"
    return form, want


EXTERNAL = {"sentinel": (SentinelSet, external_sentinel), "cluster": (RedisClusterSet, external_cluster),
            "cluster-tls": (functools.partial(RedisClusterSet, tls=True), external_cluster)}


@pytest.mark.parametrize("topology", EXTERNAL)
def test_an_external_redis_is_followed_through_its_failover(tmp_path, processes, topology):
    kind, external = EXTERNAL[topology]
    redis = kind(processes).start()
    form, want_env = external(redis)
    spec = manifest("ext", 2, 2, "address")
    spec["spec"]["redis"] = {"external": {**form, "passwordSecretRef": {"name": "redis", "key": "password"}}}
    secrets = {"PUSHCLUSTER_SECRET_REDIS_PASSWORD": redis.password}
    if getattr(redis, "tls", None):
        secrets["PUSHCLUSTER_SECRET_REDIS_CA_PEM"] = redis.tls.ca.read_text()
    with LocalCluster(tmp_path, spec, env=secrets) as cluster:
        for node in cluster.state()["nodes"]:
            env = node_env(node["pid"])
            assert {k: env.get(k) for k in want_env} == want_env, env
            if getattr(redis, "tls", None):
                assert Path(env[ENV["REDIS_CA_FILE"]]).read_text() == redis.tls.ca.read_text()
        client = clients(processes, {"url": cluster.endpoint, "transports": ["websocket"], "rooms": ["news"]})
        client.wait_ready()
        published_until_accepted(cluster, "before")
        old_primary = redis.primary()
        redis.kill(old_primary)
        wait_until(lambda: redis.primary() not in (None, old_primary), 20, f"the {topology} promoting a replica")
        published_until_accepted(cluster, "after")
        delivered_once(client, ["before", "after"])
