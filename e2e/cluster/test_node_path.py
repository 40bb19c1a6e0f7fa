"""The user's path with pods that really run, on a control plane of its own with the node
agent (harness/node_agent.py) as its kubelet: `helm install` gives two operator pods under
the chart's ServiceAccount, one leading; `kubectl apply` of examples/chat.yaml into a
restricted namespace gives a Ready cluster of three push-server pods and the managed Redis,
and real clients on different pods receive publishes exactly once through that Redis; a
SIGKILLed push-server is restarted and the cluster comes back to Ready; deleting the
PushCluster terminates every pod gracefully (exit 0) and the garbage collector removes the
rest. (Autoscaling, rollouts and operator upgrades under load: not here yet.)"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml
from clusterlib import CHART, CONTRACT, EXAMPLE, condition, helm, kubectl, kubectl_json, restricted_namespace, wait_for
from harness import PyClient
from harness.kube import ControlPlane, ControlPlaneError

NAME = "chat"
SYSTEM = "pushcluster-system"
APPS = "chat-apps"
PORT = CONTRACT["defaults"]["PORT"]
ADMIN_PORT = CONTRACT["defaults"]["ADMIN_PORT"]


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory) -> ControlPlane:
    """A control plane with the node agent, KUBECONFIG pointing at it for this module."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube-node") / "state")
    try:
        kubeconfig = plane.up(node=True)
    except ControlPlaneError as e:
        pytest.fail(f"the control plane with a node did not start: {e}")
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        yield plane
    finally:
        if previous is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = previous
        plane.down()


def pods(namespace: str, selector: str) -> list[dict]:
    return kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]


def ready(pod: dict) -> bool:
    return (condition(pod, "Ready") or {}).get("status") == "True"


@pytest.fixture(scope="module")
def operator(node_cluster) -> dict:
    restricted_namespace(SYSTEM)
    helm("install", "pushcluster-operator", str(CHART), "--namespace", SYSTEM)
    selector = "app.kubernetes.io/name=pushcluster-operator"
    running = wait_for("2 operator pods Running and Ready",
                       lambda: (p := pods(SYSTEM, selector)) and len(p) == 2 and all(ready(x) for x in p) and p,
                       timeout=90, interval=0.5)
    return {"pods": running, "selector": selector}


def test_helm_install_runs_two_operator_pods_one_leading(operator):
    names = {p["metadata"]["name"] for p in operator["pods"]}
    for pod in operator["pods"]:
        assert pod["spec"]["serviceAccountName"] == "pushcluster-operator"
        assert pod["status"]["podIP"].startswith("127.1.")
    holder = wait_for("the Lease to have a holder", lambda: kubectl_json(
        "get", "lease", CONTRACT["operator"]["LEASE_NAME"], "-n", SYSTEM)["spec"].get("holderIdentity"),
        timeout=60, interval=0.5)
    assert holder in names
    leader = next(p for p in operator["pods"] if p["metadata"]["name"] == holder)
    metrics = requests.get(f"http://{leader['status']['podIP']}:{CONTRACT['operator']['ADMIN_PORT']}"
                           f"{CONTRACT['paths']['METRICS']}", timeout=5)
    assert metrics.status_code == 200 and "pushcluster_operator_reconcile_runs_total" in metrics.text


@pytest.fixture(scope="module")
def chat(operator) -> dict:
    restricted_namespace(APPS)
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = APPS
    manifest["spec"]["drainSeconds"] = 2
    applied = time.monotonic()
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    pc = wait_for("PushCluster chat Ready with 3 ready replicas", lambda: (
        pc := kubectl_json("get", "pushcluster", NAME, "-n", APPS))
        and (condition(pc, "Ready") or {}).get("status") == "True"
        and pc["status"].get("readyReplicas") == 3 and pc, timeout=120, interval=0.3)
    seconds = time.monotonic() - applied
    print(f"\nkubectl apply -> PushCluster Ready: {seconds:.1f} s")
    selector = pc["status"]["selector"]
    token_ref = f"{NAME}-api-token"
    secret = kubectl_json("get", "secret", token_ref, "-n", APPS)
    token = base64.b64decode(secret["data"]["token"]).decode()
    return {"uid": pc["metadata"]["uid"], "selector": selector, "token": token, "ready_seconds": seconds}


def push_pods(chat: dict) -> list[dict]:
    return sorted(pods(APPS, chat["selector"]), key=lambda p: p["metadata"]["name"])


def test_chat_becomes_ready_with_redis_and_three_pods(chat):
    pc = kubectl_json("get", "pushcluster", NAME, "-n", APPS)
    assert pc["status"]["endpoint"]
    assert len(push_pods(chat)) == 3 and all(ready(p) for p in push_pods(chat))
    assert ready(kubectl_json("get", "pod", f"{NAME}-redis-0", "-n", APPS))


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "long-polling"])
def test_publishes_reach_clients_on_other_pods_exactly_once(chat, transports):
    first, second, third = (p["status"]["podIP"] for p in push_pods(chat))
    clients = []
    try:
        for ip in (first, second):
            client = PyClient()
            clients.append(client)
            assert client.connect(f"http://{ip}:{PORT}", transports=transports), client.error_message()
            assert client.subscribe("e2e")["joined"] == ["e2e"]
        headers = {"Authorization": f"Bearer {chat['token']}"}
        for n in range(3):
            r = requests.post(f"http://{third}:{PORT}{CONTRACT['paths']['PUBLISH']}", headers=headers,
                              json={"event": "news", "room": "e2e", "data": {"n": n}}, timeout=10)
            assert r.status_code == 202, r.text
            assert r.json()["fanout"] == "cluster"
        for client in clients:
            wait_for("3 publishes on the client", lambda c=client: len(c.received("news")) >= 3, timeout=15, interval=0.1)
        for client in clients:
            assert client.received("news") == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        for client in clients:
            client.close()


def test_a_killed_push_server_is_restarted_and_the_cluster_is_ready_again(chat, node_cluster):
    victim = push_pods(chat)[0]
    pid = int(victim["status"]["containerStatuses"][0]["containerID"].rsplit("//", 1)[1])
    os.kill(pid, signal.SIGKILL)
    not_ready = wait_for("the PushCluster to report the missing pod", lambda: (
        pc := kubectl_json("get", "pushcluster", NAME, "-n", APPS))
        and (condition(pc, "Ready") or {}).get("status") == "False" and pc, timeout=30, interval=0.1)
    assert condition(not_ready, "Ready")["reason"] == "PodsNotReady", condition(not_ready, "Ready")
    wait_for("the PushCluster Ready again", lambda: (
        pc := kubectl_json("get", "pushcluster", NAME, "-n", APPS))
        and (condition(pc, "Ready") or {}).get("status") == "True" and pc["status"].get("readyReplicas") == 3,
        timeout=60, interval=0.3)
    restarted = kubectl_json("get", "pod", victim["metadata"]["name"], "-n", APPS)
    assert restarted["status"]["containerStatuses"][0]["restartCount"] == 1
    assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == -9


def test_delete_terminates_every_pod_gracefully_and_collects_the_rest(chat, node_cluster):
    doomed = [p["metadata"]["name"] for p in push_pods(chat)] + [f"{NAME}-redis-0"]
    kubectl("delete", "pushcluster", NAME, "-n", APPS, "--wait=true", "--timeout=60s")
    wait_for("every pod gone", lambda: not kubectl_json("get", "pods", "-n", APPS)["items"], timeout=90, interval=0.5)
    pod_dirs = Path(node_cluster.state) / "node" / "pods"
    for name in doomed:
        exits = json.loads((pod_dirs / f"{APPS}_{name}" / "terminated.json").read_text())
        assert all(e and e["exitCode"] == 0 for e in exits.values()), f"{name}: {exits}"
    wait_for("garbage collection of the owned objects", lambda: not [
        o for o in kubectl_json("get", "deployments,statefulsets,services,secrets", "-n", APPS)["items"]
        if any(r["uid"] == chat["uid"] for r in o["metadata"].get("ownerReferences", []))], timeout=60, interval=0.5)
