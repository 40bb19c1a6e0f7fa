"""The real node (#27): a real kubelet v1.36.3, containerd and runc, the CNI bridge and
kube-proxy (harness/real_node.py) run the images built in this run from the repository's
Dockerfiles (harness/images.py) under the restricted Pod Security profile, judged and
enforced by the real components.
"""

from __future__ import annotations

import base64
import json
import os
import tarfile
from pathlib import Path

import pytest
import requests
import yaml

from harness import NodeClients, PyClient, parse_metrics
from harness.cluster import (CHART, CONTRACT, EXAMPLE, PortForward, helm, kubectl, kubectl_json,
                             embedded_control_plane, pods_with_connections, publish_and_check_once_each,
                             restricted_namespace, wait_condition, wait_for)
from harness.core import missing_build, require_binary
from harness.images import DISTROLESS_PASSWD, SHELLS
from harness.real_node import CLIENT_SOURCES, NODE, missing_tools

NAMESPACE = "real-node"
PORT = CONTRACT["defaults"]["PORT"]
ADMIN_PORT = CONTRACT["defaults"]["ADMIN_PORT"]
PATHS = CONTRACT["paths"]
RESTRICTED = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.fixture(scope="module")
def real_node(tmp_path_factory):
    """A control plane with the real node and this run's images in its containerd,
    KUBECONFIG pointing at it for this module."""
    missing = missing_tools()
    if missing:
        missing_build(f"the real node needs {', '.join(missing)}")
    for name in ("push-server", "push-operator"):
        require_binary(name)
    with embedded_control_plane(tmp_path_factory.mktemp("real-node") / "state", "real", "a real node") as plane:
        yield {"plane": plane, "images": plane.images}


def test_the_node_is_a_real_kubelet_with_containerd(real_node):
    info = kubectl_json("get", "node", NODE)["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3", info
    assert info["kubeProxyVersion"] in ("", "v1.36.3"), info
    assert info["containerRuntimeVersion"].startswith("containerd://2.4.2"), info


def test_the_stand_in_base_offers_no_more_than_distroless(real_node):
    """The push-server image's layer holds no shell and only distroless's users."""
    with tarfile.open(real_node["images"]["push-server"].archive) as outer:
        names = outer.getnames()
        index = json.load(outer.extractfile("index.json"))
        manifest = json.load(outer.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':')[1]}"))
        (layer,) = manifest["layers"]
        blob = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}")
        with tarfile.open(fileobj=blob, mode="r:*") as rootfs:
            files = {n.lstrip("./") for n in rootfs.getnames()}
            passwd = rootfs.extractfile(next(m for m in rootfs.getmembers() if m.name.lstrip("./") == "etc/passwd")).read()
    assert names, "empty archive"
    assert not files & set(SHELLS), f"a shell in the image: {files & set(SHELLS)}"
    assert "usr/local/bin/push-server" in files
    assert passwd.decode() == DISTROLESS_PASSWD


@pytest.fixture(scope="module")
def push_pod(real_node):
    """Redis and one push-server pod from this run's images, in a namespace that enforces
    the restricted Pod Security profile."""
    restricted_namespace(NAMESPACE)
    redis_pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "redis", "namespace": NAMESPACE, "labels": {"app": "redis"}},
        "spec": {"securityContext": {"runAsUser": 999, "runAsGroup": 1000, "fsGroup": 1000},
                 "containers": [{
                     "name": "redis", "image": real_node["images"]["redis"].name, "imagePullPolicy": "Never",
                     "args": ["--save", "", "--appendonly", "no", "--protected-mode", "no"],
                     "ports": [{"containerPort": 6379}], "securityContext": RESTRICTED,
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "emptyDir": {}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "namespace": NAMESPACE},
               "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [redis_pod, service]}))
    push = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "push", "namespace": NAMESPACE, "labels": {"app": "push"}},
        "spec": {"containers": [{
            "name": "push-server", "image": real_node["images"]["push-server"].name, "imagePullPolicy": "Never",
            # By the Service's DNS name: CoreDNS on the node answers it.
            "env": [{"name": CONTRACT["env"]["REDIS_URL"], "value": f"redis://redis.{NAMESPACE}.svc:6379"}],
            "ports": [{"containerPort": PORT}, {"containerPort": ADMIN_PORT}],
            "readinessProbe": {"httpGet": {"path": PATHS["READYZ"], "port": ADMIN_PORT}, "periodSeconds": 1},
            "securityContext": RESTRICTED}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(push))

    wait_condition("pod", "redis", NAMESPACE)
    pod = wait_condition("pod", "push", NAMESPACE)  # its readiness probe, run by the kubelet
    return {"push": pod, "redis_pod": redis_pod}


def test_pods_run_the_images_built_in_this_run(real_node, push_pod):
    (status,) = push_pod["push"]["status"]["containerStatuses"]
    built = real_node["images"]["push-server"]
    assert status["image"] == built.name
    assert built.config_digest in status["imageID"] or built.digest in status["imageID"], (status, built)


def test_kubectl_logs_exec_and_port_forward_reach_the_pod(real_node, push_pod):
    logs = kubectl("logs", "push", "-n", NAMESPACE).stdout
    assert "listening" in logs, logs
    version = kubectl("exec", "push", "-n", NAMESPACE, "--", "/usr/local/bin/push-server", "--version").stdout
    assert version.startswith("push-server "), version
    with PortForward(NAMESPACE, "push", ADMIN_PORT, kind="pod") as forward:
        r = requests.get(f"{forward.url}{PATHS['HEALTHZ']}", timeout=5)
    assert r.status_code == 200, r.text


def _container_pid(real_node, executable: str) -> int:
    """The pid of the container process running `executable`, found through the node's
    pod cgroups."""
    netns = real_node["plane"].real_node.netns
    for procs in Path("/sys/fs/cgroup/pids", netns).rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            try:
                if os.readlink(f"/proc/{pid}/exe").endswith(executable):
                    return int(pid)
            except OSError:
                continue
    raise AssertionError(f"no process of {executable} in the node's pod cgroups")


def test_the_container_is_isolated_non_root_with_a_read_only_root(real_node, push_pod):
    pid = _container_pid(real_node, "/push-server")
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65532"}, status
    cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1]
    assert int(cap_eff, 16) == 0, f"effective capabilities {cap_eff}"
    for ns in ("pid", "mnt", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), f"shares the host's {ns} namespace"
    with pytest.raises(OSError) as refused:
        Path(f"/proc/{pid}/root/probe").write_text("x")
    assert refused.value.errno == 30, refused.value  # EROFS
    assert not Path(f"/proc/{pid}/root/probe").exists()


def test_redis_by_its_service_name_survives_a_new_redis_pod(real_node, push_pod):
    """The push pod reaches Redis by `redis.<namespace>.svc` (cluster DNS); a new Redis pod
    at a new address is reached again without restarting the push pod."""
    def push_connected() -> bool:
        """A client other than this redis-cli (127.0.0.1): the push pod, through the Service
        (kube-proxy masquerades it to the bridge's address)."""
        clients = kubectl("exec", "redis", "-n", NAMESPACE, "--", "redis-cli", "CLIENT", "LIST").stdout
        return any("addr=" in line and "addr=127.0.0.1:" not in line for line in clients.splitlines())

    wait_for("the push pod connected to Redis", push_connected, timeout=30, interval=0.5)
    before = kubectl_json("get", "pod", "redis", "-n", NAMESPACE)["status"]["podIP"]
    kubectl("delete", "pod", "redis", "-n", NAMESPACE, "--wait=true")
    kubectl("apply", "-f", "-", stdin=json.dumps(push_pod["redis_pod"]))
    after = wait_condition("pod", "redis", NAMESPACE)["status"]["podIP"]
    assert after != before, "the new Redis pod should have a new address"
    wait_for("the push pod connected to the new Redis", push_connected, timeout=60, interval=0.5)
    pod = wait_condition("pod", "push", NAMESPACE)
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0, status


@pytest.fixture(scope="module")
def chat(real_node) -> dict:
    """The user's path: the chart, then the chat example, in restricted namespaces."""
    system, apps = "pushcluster-system", "chat-apps"
    restricted_namespace(system)
    restricted_namespace(apps)
    helm("install", "pushcluster-operator", str(CHART), "--namespace", system)
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = apps
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    pc = wait_condition("pushcluster", name, apps, timeout=180)
    token = base64.b64decode(kubectl_json("get", "secret", f"{name}-api-token", "-n", apps)["data"]["token"]).decode()
    pods = sorted(kubectl_json("get", "pods", "-n", apps, "-l", pc["status"]["selector"])["items"],
                  key=lambda p: p["metadata"]["name"])
    return {"system": system, "apps": apps, "name": name, "manifest": manifest, "pc": pc, "token": token,
            "pods": pods}


def test_the_chart_and_the_chat_example_run_on_the_real_node(real_node, chat):
    """The chart's operator pods in a restricted namespace reach the API server in-cluster;
    the chat example's Redis and three push pods become Ready under the restricted profile
    (the operator's securityContext, enforced), all from this run's images; a publish made
    through one pod's API (over kubectl port-forward) reaches a client on another pod."""
    images = real_node["images"]
    built = {images[role].name: images[role] for role in ("push-server", "push-operator", "redis")}
    statuses = [status for ns in (chat["system"], chat["apps"]) for pod in kubectl_json("get", "pods", "-n", ns)["items"]
                for status in pod["status"]["containerStatuses"]]
    assert len(statuses) == 2 + 1 + chat["manifest"]["spec"]["replicas"], statuses
    for status in statuses:
        assert status["image"] in built, status
        assert built[status["image"]].config_digest in status["imageID"], status
        assert status["ready"] and status["restartCount"] == 0, status

    client = PyClient()
    first, second = (p["metadata"]["name"] for p in chat["pods"][:2])
    try:
        with PortForward(chat["apps"], first, PORT, kind="pod") as socket_io, \
                PortForward(chat["apps"], second, ADMIN_PORT, kind="pod") as api:
            assert client.connect(socket_io.url), client.error_message()
            assert client.subscribe("real-node")["joined"] == ["real-node"]
            for n in range(3):
                r = requests.post(f"{api.url}{PATHS['PUBLISH']}", headers={"Authorization": f"Bearer {chat['token']}"},
                                  json={"room": "real-node", "event": "news", "data": {"n": n}}, timeout=10)
                assert r.status_code == 202, r.text
            wait_for("3 publishes on the client", lambda: len(client.received("news")) >= 3, timeout=15, interval=0.1)
            assert client.received("news") == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        client.close()


def test_kube_proxy_client_ip_affinity_keeps_long_polling_clients_on_their_pod(chat, processes):
    """The `service` exposure mode's promise, kept by the real kube-proxy (iptables,
    sessionAffinity ClientIP): official JS clients on long-polling only, from ten source
    addresses, through the Service's ClusterIP, land on more than one pod, never lose
    their session (a poll reaching another pod would be "Session ID unknown"), and each
    gets every room publish exactly once."""
    service = kubectl_json("get", "service", chat["name"], "-n", chat["apps"])
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    url = f"http://{service['spec']['clusterIP']}:{PORT}"
    clients = [NodeClients(processes, {"url": url, "transports": ["polling"], "rooms": ["affinity"],
                                       "sourceAddress": source}, name=f"js-polling-{n}")
               for n, source in enumerate(CLIENT_SOURCES[:10])]
    for client in clients:
        client.wait_ready(timeout=20)
    serving = pods_with_connections(chat["pods"])
    assert len(serving) >= 2, f"all clients on one pod: {serving}"
    api_ip = kubectl_json("get", "service", f"{chat['name']}-api", "-n", chat["apps"])["spec"]["clusterIP"]
    publish_and_check_once_each(f"http://{api_ip}:{ADMIN_PORT}", chat["token"], "affinity", clients)


def test_a_memory_limited_push_pod_refuses_connections_at_its_cap_and_stays_up(chat, processes):
    """`spec.resources` sets a small memory limit, which the kernel enforces through the
    kubelet's cgroup; with `spec.admission` left at its defaults, push-server derives its
    connection cap from that limit. A flood of idle WebSocket connections past the cap:
    the pod holds the cap, refuses the rest at accept, reports not-ready while full (the
    Service sends new clients elsewhere) and is neither OOM-killed nor restarted."""
    limit_mib, flood = 48, 1300
    defaults = CONTRACT["defaults"]
    cap = (limit_mib * 2**20 - defaults["MEMORY_RESERVE_BYTES"]) // defaults["MEMORY_PER_CONNECTION_BYTES"]
    manifest = json.loads(json.dumps(chat["manifest"]))
    manifest["metadata"]["name"] = "tight"
    manifest["spec"].update({"replicas": 1, "resources": {"requests": {"cpu": "50m", "memory": f"{limit_mib}Mi"},
                                                          "limits": {"memory": f"{limit_mib}Mi"}}})
    manifest["spec"].pop("autoscaling", None)
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    pc = wait_condition("pushcluster", "tight", chat["apps"], timeout=120)
    (pod,) = kubectl_json("get", "pods", "-n", chat["apps"], "-l", pc["status"]["selector"])["items"]
    cgroup = _memory_cgroup(pod["metadata"]["uid"])
    assert int((cgroup / "memory.limit_in_bytes").read_text()) == limit_mib * 2**20, "the limit is not the kernel's"
    admin = f"http://{pod['status']['podIP']}:{ADMIN_PORT}"

    def gauge(name: str) -> float:
        text = requests.get(admin + PATHS["METRICS"], timeout=5).text
        return sum(v for n, _, v in parse_metrics(text) if n == CONTRACT["metrics"][name])

    assert gauge("CONNECTION_LIMIT") == cap, "the cap is not derived from the memory limit"
    clients = NodeClients(processes, {"url": f"http://{pod['status']['podIP']}:{PORT}", "transports": ["websocket"],
                                      "count": flood}, name="flood")

    def settled() -> bool:
        refused = {line["i"] for line in clients.of("connect_error")}
        return len(refused) >= flood - cap and len(clients.of("connected")) >= cap

    wait_for(f"{cap} clients connected and {flood - cap} refused", settled, timeout=120, interval=0.5)
    assert gauge("CONNECTIONS") == cap
    assert len(clients.of("connected")) == cap
    full = wait_condition("pod", pod["metadata"]["name"], chat["apps"], status="False", timeout=30)
    (status,) = full["status"]["containerStatuses"]
    assert status["restartCount"] == 0 and not status.get("lastState"), status
    peak = int((cgroup / "memory.max_usage_in_bytes").read_text())
    print(f"\n{cap} idle connections (the cap derived from a {limit_mib}Mi limit), {flood - cap} refused: "
          f"peak cgroup memory {peak / 2**20:.1f} MiB")
    assert peak < limit_mib * 2**20
    clients.close()


def _memory_cgroup(pod_uid: str) -> Path:
    """The pod's memory cgroup (cgroupfs driver: kubepods/<qos>/pod<uid>)."""
    found = [p for p in Path("/sys/fs/cgroup/memory").rglob(f"pod{pod_uid}") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]
