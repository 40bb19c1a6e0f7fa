"""The user's path on a real cluster, in order: the chart installs the
operator, an example PushCluster becomes Ready, real socket.io clients
connect through a port-forward and receive what the publish API sends, the
cluster scales through the scale subresource, switches exposure mode, and on
deletion everything it owned goes away.

Needs pods that really run (marker `pods`): .ci/test runs it on the embedded control
plane's real node (PUSHCLUSTER_E2E_NODE=real), the hosted workflow on kind."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import requests
import socketio
import yaml

from harness import REPO
from harness.cluster import CHART, CONTRACT, EXAMPLE, PortForward, condition, helm, kubectl, kubectl_json, wait_for

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.pods]

NAME = "chat"
OWNED_KINDS = ("deployments.apps,statefulsets.apps,services,secrets,configmaps,"
               "poddisruptionbudgets.policy,networkpolicies.networking.k8s.io,ingresses.networking.k8s.io")
PORT = CONTRACT["defaults"]["PORT"]


def push_cluster(namespace: str) -> dict:
    return kubectl_json("get", "pushcluster", NAME, "-n", namespace)


def owned_objects(namespace: str, uid: str) -> list[str]:
    items = kubectl_json("get", OWNED_KINDS, "-n", namespace)["items"]
    return sorted(
        f"{o['kind']}/{o['metadata']['name']}" for o in items
        if any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
    )


def ready(namespace: str, replicas: int) -> dict | None:
    pc = push_cluster(namespace)
    status = pc.get("status", {})
    ok = (condition(pc, "Ready") or {}).get("status") == "True"
    fresh = status.get("observedGeneration") == pc["metadata"]["generation"]
    return pc if ok and fresh and status.get("readyReplicas") == replicas else None


def client_service(namespace: str, uid: str) -> dict:
    services = [
        s for s in kubectl_json("get", "services", "-n", namespace)["items"]
        if any(r["uid"] == uid for r in s["metadata"].get("ownerReferences", []))
        and s["spec"].get("clusterIP") != "None"
        and s["metadata"]["labels"].get(CONTRACT["kube"]["LABEL_COMPONENT"]) == CONTRACT["kube"]["COMPONENT_SERVER"]
        # The client port: the server API Service (`<name>-api`) has only the admin port.
        and any(p["port"] == PORT for p in s["spec"]["ports"])
    ]
    assert len(services) == 1, f"expected one client Service, found {[s['metadata']['name'] for s in services]}"
    return services[0]


@pytest.fixture(scope="module")
def chat(operator_ready, push_namespace, server_image) -> dict:
    """examples/chat.yaml, in the test namespace, with the image under test."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = push_namespace
    manifest["spec"].update(image=server_image, imagePullPolicy="IfNotPresent", replicas=2, drainSeconds=5)
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    try:
        pc = wait_for("PushCluster chat to be Ready with 2 ready replicas", lambda: ready(push_namespace, 2), timeout=420)
        yield {"namespace": push_namespace, "uid": pc["metadata"]["uid"]}
    finally:
        # While the operator still runs, so no finalizer can hold the namespace.
        kubectl("delete", "pushcluster", NAME, "-n", push_namespace, "--ignore-not-found", "--timeout=120s", check=False)


def test_operator_runs_with_leader_election(operator_ready):
    ns = operator_ready["namespace"]
    pods = kubectl_json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=pushcluster-operator")["items"]
    assert len(pods) == 2
    lease = wait_for("the operator's Lease to have a holder",
                     lambda: kubectl_json("get", "lease", CONTRACT["operator"]["LEASE_NAME"], "-n", ns)["spec"].get("holderIdentity"))
    assert lease in {p["metadata"]["name"] for p in pods}


def test_operator_metrics_service_reaches_the_admin_endpoints(operator_ready):
    ns = operator_ready["namespace"]
    services = kubectl_json("get", "services", "-n", ns, "-l", "app.kubernetes.io/component=metrics")["items"]
    assert len(services) == 1
    with PortForward(ns, services[0]["metadata"]["name"], CONTRACT["operator"]["ADMIN_PORT"]) as forward:
        assert requests.get(forward.url + CONTRACT["paths"]["HEALTHZ"], timeout=10).status_code == 200
        metrics = requests.get(forward.url + CONTRACT["paths"]["METRICS"], timeout=10)
        assert metrics.status_code == 200
        assert "# TYPE" in metrics.text


def test_the_cluster_serves_the_committed_crd(operator_ready):
    live = kubectl_json("get", "crd", "pushclusters.pushcluster.dev")
    committed = yaml.safe_load((REPO / "crds" / "pushcluster.yaml").read_text())
    assert live["spec"]["names"] == {**committed["spec"]["names"], "listKind": "PushClusterList"}
    for live_version, version in zip(live["spec"]["versions"], committed["spec"]["versions"], strict=True):
        assert live_version["name"] == version["name"]
        assert live_version["subresources"] == version["subresources"]
        assert live_version["schema"] == version["schema"]
    if operator_ready["crd_installed"]:
        assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_example_becomes_ready_and_owns_its_objects(chat):
    pc = push_cluster(chat["namespace"])
    assert pc["status"]["endpoint"]
    assert pc["status"]["selector"]
    owned = owned_objects(chat["namespace"], chat["uid"])
    kinds = {o.split("/")[0] for o in owned}
    assert {"Deployment", "Service", "StatefulSet", "PodDisruptionBudget"} <= kinds, owned
    assert client_service(chat["namespace"], chat["uid"])["spec"]["sessionAffinity"] == "ClientIP"


def api_token(namespace: str) -> str:
    pc = push_cluster(namespace)
    ref = pc["spec"].get("auth", {}).get("apiTokenSecretRef") or {"name": f"{NAME}-api-token", "key": "token"}
    secret = kubectl_json("get", "secret", ref["name"], "-n", namespace)
    return base64.b64decode(secret["data"][ref["key"]]).decode()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "long-polling"])
def test_client_receives_a_publish_through_a_port_forward(chat, transports):
    service = client_service(chat["namespace"], chat["uid"])
    port = next((p["port"] for p in service["spec"]["ports"] if p.get("targetPort") in (PORT, "http")),
                service["spec"]["ports"][0]["port"])
    received: list[dict] = []
    arrived = threading.Event()
    api_service = f"{NAME}-api"  # the server API Service: backends publish here, clients never reach it
    with PortForward(chat["namespace"], service["metadata"]["name"], port) as forward, \
            PortForward(chat["namespace"], api_service, CONTRACT["defaults"]["ADMIN_PORT"]) as api:
        client = socketio.Client(reconnection=False)

        @client.on("news")
        def on_news(data, *_offset):  # history on: the offset comes last
            received.append(data)
            arrived.set()

        client.connect(forward.url, transports=transports, socketio_path=CONTRACT["paths"]["SOCKET_IO"].strip("/"),
                       wait_timeout=20)
        try:
            ack = client.call(CONTRACT["socket"]["SUBSCRIBE"], {"rooms": ["e2e"]}, timeout=10)
            assert ack["joined"] == ["e2e"], ack
            message = {"event": "news", "room": "e2e", "data": {"transports": transports}}
            exposed = requests.post(forward.url + CONTRACT["paths"]["PUBLISH"], data=json.dumps(message),
                                    headers={"Authorization": f"Bearer {api_token(chat['namespace'])}"}, timeout=10)
            assert exposed.status_code == 404, "the publish API through the client Service"
            response = requests.post(api.url + CONTRACT["paths"]["PUBLISH"], data=json.dumps(message),
                                     headers={"Authorization": f"Bearer {api_token(chat['namespace'])}",
                                              "Content-Type": "application/json"}, timeout=10)
            assert response.status_code == 202, response.text
            assert arrived.wait(15), "the published message never reached the client"
            assert received == [{"transports": transports}]
            unauthorized = requests.post(api.url + CONTRACT["paths"]["PUBLISH"], data=json.dumps(message),
                                         headers={"Authorization": "Bearer wrong"}, timeout=10)
            assert unauthorized.status_code == 401
        finally:
            client.disconnect()


def test_kubectl_scale_goes_through_the_scale_subresource(chat):
    ns = chat["namespace"]
    kubectl("scale", f"pushcluster/{NAME}", "-n", ns, "--replicas=3")
    wait_for("PushCluster chat to be Ready with 3 ready replicas", lambda: ready(ns, 3), timeout=300)
    scale = json.loads(kubectl("get", "--raw", f"/apis/pushcluster.dev/v1alpha1/namespaces/{ns}/pushclusters/{NAME}/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"]
    pods = kubectl_json("get", "pods", "-n", ns, "-l", scale["status"]["selector"])["items"]
    assert len([p for p in pods if p["status"].get("phase") == "Running"]) >= 3


def test_helm_upgrade_rolls_the_operator_and_keeps_the_cluster(chat, operator_ready):
    release, ns = operator_ready["name"], operator_ready["namespace"]
    helm("upgrade", release, str(CHART), "--namespace", ns, "--reuse-values", "--set", "log.level=debug")
    deployment = operator_ready["deployment"]["metadata"]["name"]
    kubectl("rollout", "status", f"deployment/{deployment}", "-n", ns, "--timeout=300s", timeout=320)
    env = kubectl_json("get", "deployment", deployment, "-n", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": CONTRACT["operator::env"]["LOG"], "value": "debug"} in env
    assert kubectl("get", "crd", "pushclusters.pushcluster.dev", check=False).returncode == 0
    replicas = push_cluster(chat["namespace"])["spec"]["replicas"]
    wait_for("PushCluster chat to stay Ready", lambda: ready(chat["namespace"], replicas), timeout=120)


def owned_ingresses(namespace: str, uid: str) -> list[dict]:
    return [i for i in kubectl_json("get", "ingresses.networking.k8s.io", "-n", namespace)["items"]
            if any(r["uid"] == uid for r in i["metadata"].get("ownerReferences", []))]


def test_switching_exposure_mode_replaces_the_exposure_object(chat):
    ns, uid = chat["namespace"], chat["uid"]
    to_ingress = {"spec": {"exposure": {"service": None, "host": "chat.e2e.test",
                                        "ingress": {"className": "nginx", "controller": "nginx", "affinity": "cookie"}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_ingress))
    ingress = wait_for("the operator to create the Ingress", lambda: owned_ingresses(ns, uid), timeout=120)[0]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "chat.e2e.test"
    annotations = ingress["metadata"]["annotations"]
    assert annotations.get("nginx.ingress.kubernetes.io/affinity") == "cookie"
    assert annotations.get("nginx.ingress.kubernetes.io/affinity-mode") == "persistent"

    to_service = {"spec": {"exposure": {"ingress": None, "host": None, "service": {}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_service))
    wait_for("the operator to remove the Ingress", lambda: not owned_ingresses(ns, uid), timeout=120)
    assert client_service(ns, uid)["spec"]["sessionAffinity"] == "ClientIP"


def test_bad_spec_is_rejected_by_the_api_server_with_a_clear_message(chat):
    both = {"spec": {"redis": {"external": {"url": "redis://example:6379"}}}}
    proc = kubectl("patch", "pushcluster", NAME, "-n", chat["namespace"], "--type=merge", "-p", json.dumps(both), check=False)
    assert proc.returncode != 0
    assert "set exactly one of managed or external" in proc.stderr


def test_deleting_it_removes_everything_it_owned(chat):
    ns, uid = chat["namespace"], chat["uid"]
    owned_before = owned_objects(ns, uid)
    assert owned_before
    selector = f"{CONTRACT['kube']['LABEL_INSTANCE']}={NAME}"
    kubectl("delete", "pushcluster", NAME, "-n", ns, "--wait=true", "--timeout=120s")
    wait_for(f"garbage collection of {owned_before}", lambda: owned_objects(ns, uid) == [], timeout=180)
    wait_for("the push-server and redis pods to go away",
             lambda: kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"] == [], timeout=180)
