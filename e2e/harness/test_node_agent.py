"""The node agent's pure parts: the kubelet's `$(VAR)` expansion, the rewrite of listen
addresses, Service names and mount paths, and image → binary mapping."""

import pytest

from harness.node_agent import ImageError, NodeAgent, ServiceProxy, expand


@pytest.mark.parametrize("value, env, expected", [
    ("--requirepass $(REDIS_PASSWORD)", {"REDIS_PASSWORD": "s3"}, "--requirepass s3"),
    ("$(UNSET) stays", {}, "$(UNSET) stays"),
    ("$$(ESCAPED)", {"ESCAPED": "x"}, "$(ESCAPED)"),
    ("$(A)$(B)", {"A": "1", "B": "2"}, "12"),
], ids=["set", "unset-kept", "escaped", "adjacent"])
def test_expand_is_the_kubelets(value, env, expected):
    assert expand(value, env) == expected


class _Proxy(ServiceProxy):
    def __init__(self):  # no sockets in a unit test
        self.endpoints = {}


@pytest.fixture
def agent(tmp_path) -> NodeAgent:
    a = NodeAgent.__new__(NodeAgent)
    a.services = {"apps/chat-redis": ("127.100.1.2", _Proxy(),
                                      {"spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 6379}]}})}
    a.binaries = {"push-server": "/bin/push-server", "push-operator": "/bin/push-operator", "redis": "/usr/bin/redis-server"}
    return a


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:3000", "127.1.2.3:3000"),
    ("redis://chat-redis.apps.svc:6379/0?protocol=resp3", "redis://127.100.1.2:6379/0?protocol=resp3"),
    ("redis://chat-redis.apps.svc.cluster.local:6379", "redis://127.100.1.2:6379"),
    ("redis://chat-redis:6379", "redis://127.100.1.2:6379"),
    ("10.96.0.7:6379", "127.100.1.2:6379"),
    ("/data", "/pods/x/volumes/data"),
    ("/etc/push/jwt/public-key.pem", "/pods/x/volumes/jwt/public-key.pem"),
    ("/database", "/database"),
    ("redis://chat-redis.other.svc:6379", "redis://chat-redis.other.svc:6379"),
], ids=["listen", "svc", "svc-cluster-local", "short-name-same-namespace", "cluster-ip", "mount", "mount-file",
        "not-a-mount-prefix", "other-namespace-unknown"])
def test_rewrite_maps_cluster_names_onto_this_machine(agent, text, expected):
    mounts = {"/data": "/pods/x/volumes/data", "/etc/push/jwt": "/pods/x/volumes/jwt"}
    assert agent.rewrite(text, "apps", "127.1.2.3", mounts) == expected


@pytest.mark.parametrize("image, binary", [
    ("ghcr.io/pushcluster/push-server:0.1.0", "/bin/push-server"),
    ("ghcr.io/pushcluster/push-operator:e2e", "/bin/push-operator"),
    ("docker.io/library/redis:7.2-alpine", "/usr/bin/redis-server"),
    ("localhost:5000/push-server@sha256:abc", "/bin/push-server"),
])
def test_images_of_this_project_map_to_its_binaries(agent, image, binary):
    assert agent.command({"image": image, "args": ["run"]}) == [binary, "run"]


def test_any_other_image_is_refused_naming_it(agent):
    with pytest.raises(ImageError, match="nginx:1.27 is not one this node can run"):
        agent.command({"image": "nginx:1.27"})


def test_two_pods_whose_addresses_collide_get_different_ones(tmp_path):
    """The CI run at 9fdd3c7: `chat-7b68699665-kr58h` and `chat-577d4ffb46-ccqxc` hash to the
    same 127.1.65.164 under that run's state directory; the second pod could not listen."""
    a = NodeAgent.__new__(NodeAgent)
    a.salt = "/tmp/pytest-of-root/pytest-82/kube-node0/state/node"
    a.runs = {}
    first = a.free_address("chat-apps/chat-7b68699665-kr58h")
    assert first == a.free_address("chat-apps/chat-577d4ffb46-ccqxc") == "127.1.65.164", "the collision"

    class Run:
        ip = first
    a.runs = {"uid-1": Run()}
    second = a.free_address("chat-apps/chat-577d4ffb46-ccqxc")
    assert second != first and second.startswith("127.1.")
    assert a.free_address("chat-apps/chat-7b68699665-kr58h") != first, "taken while the first runs"
