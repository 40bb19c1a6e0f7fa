"""`push-operator run` against the real API server, authenticated as the chart's
ServiceAccount with exactly the chart's (cluster-wide) RBAC. For examples/chat.yaml in a
namespace that enforces the restricted Pod Security profile: the owned objects appear,
written by server-side apply under `pushcluster-operator`, each with a controller
ownerReference; status goes through `/status` with observedGeneration; the ReplicaSet
controller creates the pods without a Pod Security rejection; `kubectl scale` and an HPA
reach the scale subresource; exposure and Redis mode switches add and prune objects; deletion
is left to the real garbage collector; the API server never answered 403 or 422."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from harness import Processes, gateway_api
from harness.cluster import CONTRACT, EXAMPLE, condition, kubectl, kubectl_json, restricted_namespace, wait_for
from harness.host_operator import HostOperator, service_account_kubeconfig

NAME = "chat"
PAUSED = "pushcluster.dev/paused"
FIELD_MANAGER = CONTRACT["kube"]["FIELD_MANAGER"]
OWNED_KINDS = ("deployments.apps,statefulsets.apps,services,secrets,configmaps,"
               "poddisruptionbudgets.policy,networkpolicies.networking.k8s.io,ingresses.networking.k8s.io")


@pytest.fixture(scope="module")
def namespace(chart_release, run_id) -> str:
    name = f"pc-e2e-{run_id}-apps"
    restricted_namespace(name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def operator(chart_release, tmp_path_factory) -> HostOperator:
    workdir = tmp_path_factory.mktemp("operator")
    procs = Processes(workdir)
    kubeconfig = service_account_kubeconfig(workdir / "sa.kubeconfig", chart_release["namespace"],
                                            chart_release["service_account"])
    op = HostOperator(procs, kubeconfig, "host-operator", chart_release["namespace"]).start()
    try:
        wait_for("the host operator to lead and be ready", op.ready, timeout=60, interval=0.2)
        yield op
    finally:
        procs.kill_all()


def push_cluster(namespace: str, name: str = NAME) -> dict:
    return kubectl_json("get", "pushcluster", name, "-n", namespace, "--show-managed-fields")


def owned(namespace: str, uid: str) -> list[dict]:
    return [o for o in kubectl_json("get", OWNED_KINDS, "-n", namespace, "--show-managed-fields")["items"]
            if any(r["uid"] == uid for r in o["metadata"].get("ownerReferences", []))]


def names(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@pytest.fixture(scope="module")
def chat(operator, namespace) -> dict:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = namespace
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    uid = push_cluster(namespace)["metadata"]["uid"]
    expected = {("Deployment", NAME), ("Service", NAME), ("Service", f"{NAME}-headless"),
                ("PodDisruptionBudget", NAME), ("StatefulSet", f"{NAME}-redis"), ("Service", f"{NAME}-redis"),
                ("PodDisruptionBudget", f"{NAME}-redis"),
                ("NetworkPolicy", f"{NAME}-redis"), ("Secret", f"{NAME}-redis-password"),
                ("Secret", f"{NAME}-api-token")}
    started = time.monotonic()
    wait_for(f"the operator to create {sorted(expected)}", lambda: expected <= names(owned(namespace, uid)),
             timeout=60, interval=0.3)
    return {"namespace": namespace, "uid": uid, "expected": expected, "seconds": time.monotonic() - started}


def test_owned_objects_are_server_side_applied_and_controller_owned(chat):
    for obj in owned(chat["namespace"], chat["uid"]):
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        managers = {(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])}
        # Generated Secrets are created once (an apply would rotate them), still under our name.
        how = "Update" if obj["kind"] == "Secret" else "Apply"
        assert (FIELD_MANAGER, how) in managers, f"{what}: managed by {managers}"
        controllers = [r for r in obj["metadata"]["ownerReferences"] if r.get("controller")]
        assert len(controllers) == 1, f"{what}: {obj['metadata']['ownerReferences']}"
        ref = controllers[0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["apiVersion"]) == \
            ("PushCluster", NAME, chat["uid"], "pushcluster.dev/v1alpha1"), what


def test_status_is_written_through_the_status_subresource(chat):
    pc = wait_for("status.observedGeneration to reach the generation",
                  lambda: (pc := push_cluster(chat["namespace"])).get("status", {}).get("observedGeneration")
                  == pc["metadata"]["generation"] and pc, timeout=60, interval=0.3)
    status_writes = [m for m in pc["metadata"]["managedFields"]
                     if m["manager"] == FIELD_MANAGER and m.get("subresource") == "status"]
    assert status_writes, pc["metadata"]["managedFields"]
    assert pc["status"]["selector"]
    # No node runs the pods here: Ready must say so, not claim readiness.
    ready = condition(pc, "Ready")
    assert ready is not None and ready["status"] == "False", pc["status"]
    assert pc["status"].get("readyReplicas", 0) == 0


def test_restricted_pod_security_admits_the_pods_the_replicaset_creates(chat):
    ns = chat["namespace"]
    replicas = kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"]
    selector = push_cluster(ns)["status"]["selector"]
    wait_for(f"{replicas} push-server pods created by the ReplicaSet",
             lambda: len(kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]) == replicas,
             timeout=60, interval=0.5)
    wait_for("the managed Redis pod created by the StatefulSet",
             lambda: kubectl("get", "pod", f"{NAME}-redis-0", "-n", ns, check=False).returncode == 0,
             timeout=60, interval=0.5)
    events = kubectl_json("get", "events", "-n", ns)["items"]
    rejected = [e["message"] for e in events if e.get("reason") == "FailedCreate"]
    assert rejected == [], rejected


def test_kubectl_scale_reaches_the_deployment(chat):
    ns = chat["namespace"]
    kubectl("scale", f"pushcluster/{NAME}", "-n", ns, "--replicas=5")
    wait_for("the Deployment to have 5 replicas",
             lambda: kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"] == 5,
             timeout=60, interval=0.3)
    scale = json.loads(kubectl("get", "--raw",
                               f"/apis/pushcluster.dev/v1alpha1/namespaces/{ns}/pushclusters/{NAME}/scale").stdout)
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["selector"] == push_cluster(ns)["status"]["selector"]


def test_an_hpa_on_the_pushcluster_reads_its_scale_subresource(chat):
    ns = chat["namespace"]
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster", "name": NAME},
                 "minReplicas": 2, "maxReplicas": 6,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                               "target": {"type": "Utilization", "averageUtilization": 70}}}]},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(hpa))
    try:
        def found_target():
            status = kubectl_json("get", "hpa", NAME, "-n", ns).get("status", {})
            able = next((c for c in status.get("conditions", []) if c["type"] == "AbleToScale"), None)
            return able if able and able["reason"] == "SucceededGetScale" else None

        able = wait_for("the HPA controller to read the PushCluster's scale subresource", found_target,
                        timeout=90, interval=1)
        assert able["status"] == "True", able
        status = kubectl_json("get", "hpa", NAME, "-n", ns)["status"]
        assert status["currentReplicas"] == 5, status
    finally:
        kubectl("delete", "hpa", NAME, "-n", ns, "--ignore-not-found")


def owned_of_kind(chat: dict, kind: str) -> list[dict]:
    return [o for o in owned(chat["namespace"], chat["uid"]) if o["kind"] == kind]


def test_exposure_switch_adds_the_ingress_and_prunes_it_again(chat):
    ns = chat["namespace"]
    to_ingress = {"spec": {"exposure": {"service": None, "host": "chat.e2e.test",
                                        "ingress": {"className": "nginx", "controller": "nginx", "affinity": "cookie"}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_ingress))
    ingress = wait_for("the operator to create the Ingress", lambda: owned_of_kind(chat, "Ingress"),
                       timeout=60, interval=0.3)[0]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    to_service = {"spec": {"exposure": {"ingress": None, "host": None, "service": {}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_service))
    wait_for("the operator to prune the Ingress", lambda: not owned_of_kind(chat, "Ingress"), timeout=60, interval=0.3)
    client = next(s for s in owned_of_kind(chat, "Service") if s["metadata"]["name"] == NAME)
    assert client["spec"]["sessionAffinity"] == "ClientIP"


def exposure_ready(ns: str) -> dict:
    return condition(push_cluster(ns), "ExposureReady") or {}


def test_exposure_ready_says_whether_a_controller_routes_with_session_persistence(chat):
    """#26: ExposureReady reads back what the API server and the controllers wrote. An
    Ingress no controller has admitted: False (AwaitingController, naming its class); its
    controller writes an address into its status: True with that address. An HTTPRoute on
    the Gateway API's standard-channel CRDs (the real ones, v1.6.3), which have no
    sessionPersistence: server-side apply refuses it, so no route and False
    (SessionPersistenceUnsupported) with a Warning Event, not a failed apply; the experimental-channel CRDs installed: the route keeps it, False
    (RouteNotAccepted) until the Gateway's controller accepts it with its references
    resolved; then True, naming the controller."""
    ns = chat["namespace"]
    to_ingress = {"spec": {"exposure": {"service": None, "host": "chat.e2e.test",
                                        "ingress": {"className": "e2e-class", "controller": "nginx"}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_ingress))
    waiting = wait_for("ExposureReady False: no controller admitted the Ingress",
                       lambda: (c := exposure_ready(ns)).get("reason") == "AwaitingController" and c,
                       timeout=60, interval=0.3)
    assert waiting["status"] == "False" and "e2e-class" in waiting["message"], waiting
    kubectl("patch", "ingress", NAME, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}))
    admitted = wait_for("ExposureReady True once the controller wrote its address (the Ingress is watched)",
                        lambda: (c := exposure_ready(ns)).get("status") == "True" and c, timeout=30, interval=0.3)
    assert "127.0.0.1" in admitted["message"], admitted

    route_crd = "httproutes.gateway.networking.k8s.io"
    try:
        kubectl("apply", "--server-side", "-f", str(gateway_api.crd("standard")))
        kubectl("wait", "--for=condition=Established", f"crd/{route_crd}", "--timeout=60s")
        to_gateway = {"spec": {"exposure": {"ingress": None, "gateway": {"parentRef": {"name": "gw"}}}}}
        kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_gateway))
        dropped = wait_for("ExposureReady False: session persistence refused by the standard-channel CRD",
                           lambda: (c := exposure_ready(ns)).get("reason") == "SessionPersistenceUnsupported" and c,
                           timeout=90, interval=0.5)
        assert dropped["status"] == "False" and "sessionPersistence" in dropped["message"], dropped
        # Server-side apply refuses the field ("field not declared in schema"): no route, and
        # no failed apply either (Degraded stays False).
        assert kubectl("get", "httproute", NAME, "-n", ns, check=False).returncode != 0, "a route without stickiness"
        assert condition(push_cluster(ns), "Degraded")["status"] == "False", push_cluster(ns)["status"]
        events = kubectl_json("get", "events.events.k8s.io", "-n", ns)["items"]
        assert any(e.get("reason") == "SessionPersistenceUnsupported" and e.get("type") == "Warning"
                   for e in events), [e.get("reason") for e in events]

        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api.crd("experimental")))
        pending = wait_for("ExposureReady False: the experimental CRD keeps it, no Gateway accepted the route yet",
                           lambda: (c := exposure_ready(ns)).get("reason") == "RouteNotAccepted" and c,
                           timeout=60, interval=0.5)
        assert f"Gateway {ns}/gw" in pending["message"], pending
        stored = kubectl_json("get", "httproute", NAME, "-n", ns)
        assert stored["spec"]["rules"][0]["sessionPersistence"]["type"] == "Cookie", stored["spec"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [{"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now,
                       "observedGeneration": stored["metadata"]["generation"]} for t in ("Accepted", "ResolvedRefs")]
        parent = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
                  "controllerName": "example.net/e2e-gateway", "conditions": conditions}
        kubectl("patch", "httproute", NAME, "-n", ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"parents": [parent]}}))
        accepted = wait_for("ExposureReady True once the Gateway's controller accepted the route",
                            lambda: (c := exposure_ready(ns)).get("status") == "True" and c, timeout=30, interval=0.5)
        assert "example.net/e2e-gateway" in accepted["message"], accepted
    finally:
        to_service = {"spec": {"exposure": {"gateway": None, "ingress": None, "host": None, "service": {}}}}
        kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(to_service))
        wait_for("ExposureReady True for the Service again",
                 lambda: exposure_ready(ns).get("status") == "True", timeout=60, interval=0.3)
        kubectl("delete", "crd", route_crd, "--ignore-not-found")


def test_redis_switch_prunes_the_managed_redis_and_brings_it_back(chat):
    ns = chat["namespace"]
    managed = {("StatefulSet", f"{NAME}-redis"), ("Service", f"{NAME}-redis"), ("NetworkPolicy", f"{NAME}-redis"),
               ("PodDisruptionBudget", f"{NAME}-redis"), ("Secret", f"{NAME}-redis-password")}
    kubectl("create", "secret", "generic", "redis-credentials", "-n", ns, "--from-literal=password=e2e")
    external = {"spec": {"redis": {"managed": None, "external": {
        "url": "redis://redis.example.internal:6379", "passwordSecretRef": {"name": "redis-credentials", "key": "password"}}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(external))
    wait_for("the managed Redis objects to be pruned",
             lambda: not (managed & names(owned(chat["namespace"], chat["uid"]))), timeout=60, interval=0.3)
    env = kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    url = next(e["value"] for e in env if e["name"] == CONTRACT["env"]["REDIS_URL"])
    assert url.startswith("redis://redis.example.internal:6379"), url
    back = {"spec": {"redis": {"external": None, "managed": {}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(back))
    wait_for("the managed Redis objects to come back",
             lambda: managed <= names(owned(chat["namespace"], chat["uid"])), timeout=60, interval=0.3)


def redis_statefulset(ns: str) -> dict:
    return kubectl_json("get", "statefulset", f"{NAME}-redis", "-n", ns)


def settled(ns: str, name: str = NAME) -> dict | None:
    """The PushCluster once its status speaks of its current generation with nothing degraded."""
    pc = push_cluster(ns, name)
    degraded = condition(pc, "Degraded")
    if pc.get("status", {}).get("observedGeneration") == pc["metadata"]["generation"] and degraded \
            and degraded["status"] == "False":
        return pc
    return None


def test_persistence_on_and_off_recreates_the_redis_statefulset_and_later_changes_still_apply(chat):
    """volumeClaimTemplates are immutable: applied as they were, every reconcile failed with
    422, the status kept saying the spec was applied, and a later `kubectl scale` never
    reached the Deployment (Redis is applied first)."""
    ns = chat["namespace"]
    before = redis_statefulset(ns)
    assert not before["spec"].get("volumeClaimTemplates"), before["spec"]
    on = {"spec": {"redis": {"managed": {"persistence": {"size": "1Gi", "whenDeleted": "Delete"}}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(on))
    sts = wait_for("a new Redis StatefulSet with a 1Gi volume claim template",
                   lambda: (s := redis_statefulset(ns))["metadata"]["uid"] != before["metadata"]["uid"]
                   and s["spec"].get("volumeClaimTemplates") and s, timeout=60, interval=0.3)
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert "--appendonly" in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    wait_for("the status to settle on the new generation", lambda: settled(ns), timeout=60, interval=0.3)
    # The next change is not stuck behind Redis.
    kubectl("scale", f"pushcluster/{NAME}", "-n", ns, "--replicas=4")
    wait_for("the Deployment to have 4 replicas",
             lambda: kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"] == 4,
             timeout=60, interval=0.3)
    # The Redis pod the old StatefulSet made was kept and adopted, not deleted with it.
    wait_for("the Redis pod to belong to the new StatefulSet",
             lambda: [r["uid"] for r in kubectl_json("get", "pod", f"{NAME}-redis-0", "-n", ns)["metadata"]
                      .get("ownerReferences", []) if r.get("controller")] == [sts["metadata"]["uid"]],
             timeout=60, interval=0.3)
    off = {"spec": {"redis": {"managed": {"persistence": None}}}}
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p", json.dumps(off))
    wait_for("a Redis StatefulSet without volume claim templates again",
             lambda: (s := redis_statefulset(ns))["metadata"]["uid"] != sts["metadata"]["uid"]
             and not s["spec"].get("volumeClaimTemplates"), timeout=60, interval=0.3)
    wait_for("the status to settle again", lambda: settled(ns), timeout=60, interval=0.3)
    events = kubectl_json("get", "events", "-n", ns, "--field-selector", "reason=Recreated")["items"]
    assert events and "volume claim templates" in events[0]["message"], events


def test_the_disruption_budget_takes_a_percentage_and_a_string_count_is_explained(chat):
    ns = chat["namespace"]
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"disruption": {"maxUnavailable": "50%"}}}))
    wait_for("the PodDisruptionBudget at 50%", lambda: kubectl_json(
        "get", "pdb", NAME, "-n", ns)["spec"].get("maxUnavailable") == "50%", timeout=30, interval=0.3)
    # "2" passes the CRD's rule (CEL sees 2 and "2" alike) but no PDB takes it: said in the status.
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"disruption": {"maxUnavailable": "2"}}}))
    wait_for("Degraded InvalidSpec naming the field", lambda: (
        (c := condition(push_cluster(ns), "Degraded") or {}).get("reason") == "InvalidSpec"
        and "spec.disruption.maxUnavailable" in c.get("message", "")), timeout=30, interval=0.3)
    assert kubectl_json("get", "pdb", NAME, "-n", ns)["spec"]["maxUnavailable"] == "50%", "kept the last good one"
    kubectl("patch", "pushcluster", NAME, "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"disruption": {"maxUnavailable": 1}}}))
    wait_for("the PodDisruptionBudget at 1 again", lambda: kubectl_json(
        "get", "pdb", NAME, "-n", ns)["spec"].get("maxUnavailable") == 1, timeout=30, interval=0.3)
    wait_for("the status to settle", lambda: settled(ns), timeout=60, interval=0.3)


# The one PushCluster the API server refuses on purpose (the log check below leaves it out).
REFUSED = "refused"


def test_a_spec_the_api_server_refuses_is_degraded_naming_the_step_until_fixed(chat):
    """A spec that passes the CRD but not the API server's validation of the Deployment
    (a CPU request above its limit: 422 on every apply): within the failing reconcile,
    Degraded=True names the step, the object and the API server's answer, Ready=False,
    and observedGeneration stays at the last generation applied in full. Fixing the spec
    clears both and moves observedGeneration on."""
    ns = chat["namespace"]
    manifest = {"apiVersion": f"{CONTRACT['kube']['GROUP']}/{CONTRACT['kube']['VERSION']}", "kind": "PushCluster",
                "metadata": {"name": REFUSED, "namespace": ns}, "spec": {"replicas": 1}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    try:
        applied = wait_for("the status to settle first", lambda: settled(ns, REFUSED), timeout=60, interval=0.3)
        refused = {"spec": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}
        kubectl("patch", "pushcluster", REFUSED, "-n", ns, "--type=merge", "-p", json.dumps(refused))
        pc = wait_for("Degraded naming the apply step", lambda: (pc := push_cluster(ns, REFUSED))
                      and (condition(pc, "Degraded") or {}).get("reason") == "ApplyFailed" and pc,
                      timeout=30, interval=0.2)
        degraded, ready = condition(pc, "Degraded"), condition(pc, "Ready")
        assert degraded["status"] == "True" and degraded["observedGeneration"] == pc["metadata"]["generation"], \
            degraded
        message = degraded["message"]
        assert message.startswith(f"step apply failed: applying Deployment/{REFUSED}"), message
        assert "must be less than or equal to cpu limit" in message, "the API server's own answer: " + message
        assert ready["status"] == "False", ready
        assert pc["status"]["observedGeneration"] == applied["status"]["observedGeneration"] \
            < pc["metadata"]["generation"], pc["status"]
        kubectl("patch", "pushcluster", REFUSED, "-n", ns, "--type=merge", "-p",
                json.dumps({"spec": {"resources": None}}))
        fixed = wait_for("the status to settle on the fixed generation", lambda: settled(ns, REFUSED),
                         timeout=60, interval=0.3)
        # No node here: Ready waits for pods, but no longer for the refused apply.
        assert condition(fixed, "Ready")["reason"] != "ApplyFailed", condition(fixed, "Ready")
    finally:
        kubectl("delete", "pushcluster", REFUSED, "-n", ns, "--wait=false", "--ignore-not-found", check=False)


def test_a_paused_cluster_is_not_repaired_or_scaled_until_resumed(chat, operator):
    """`pushcluster.dev/paused: "true"`: a deleted owned object stays deleted and a
    `kubectl scale` does not reach the Deployment, though the operator reconciled after
    both (its log says so for this cluster); removing the annotation does both."""
    ns = chat["namespace"]
    wait_for("the status to settle", lambda: settled(ns), timeout=60, interval=0.3)
    replicas = kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"]
    kubectl("annotate", "pushcluster", NAME, "-n", ns, f"{PAUSED}=true")
    wait_for("the Paused condition", lambda: (condition(push_cluster(ns), "Paused") or {}).get("status") == "True",
             timeout=30, interval=0.2)

    def paused_reconciles() -> int:
        return sum(1 for line in operator.log().splitlines()
                   if "paused: nothing applied" in line and f"{ns}/{NAME}" in line)
    before = paused_reconciles()
    kubectl("delete", "service", NAME, "-n", ns)
    kubectl("scale", f"pushcluster/{NAME}", "-n", ns, f"--replicas={replicas + 1}")
    wait_for("the operator reconciling the paused cluster after both changes",
             lambda: paused_reconciles() >= before + 2, timeout=30, interval=0.2)
    assert kubectl("get", "service", NAME, "-n", ns, check=False).returncode != 0, "repaired while paused"
    assert kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"] == replicas, "scaled while paused"
    reasons = {e["reason"] for e in kubectl_json("get", "events", "-n", ns)["items"]}
    assert "Paused" in reasons, reasons

    kubectl("annotate", "pushcluster", NAME, "-n", ns, f"{PAUSED}-")
    wait_for("the Service back and the Deployment scaled", lambda: (
        kubectl("get", "service", NAME, "-n", ns, check=False).returncode == 0
        and kubectl_json("get", "deployment", NAME, "-n", ns)["spec"]["replicas"] == replicas + 1),
        timeout=60, interval=0.3)
    wait_for("the Paused condition gone", lambda: condition(push_cluster(ns), "Paused") is None, timeout=30,
             interval=0.2)
    assert "Resumed" in {e["reason"] for e in kubectl_json("get", "events", "-n", ns)["items"]}


def test_the_api_server_never_refused_the_operator(chat, operator):
    refusals = [line for line in operator.api_refusals()
                if f"/{REFUSED}" not in line and f"{REFUSED}.{chat['namespace']}" not in line]
    assert refusals == [], "\n".join(refusals[:20])
    assert operator.reconcile_runs() > 0


def test_deleting_it_leaves_everything_to_the_garbage_collector(chat):
    ns, uid = chat["namespace"], chat["uid"]
    before = names(owned(ns, uid))
    assert chat["expected"] <= before
    kubectl("delete", "pushcluster", NAME, "-n", ns, "--wait=true", "--timeout=60s")
    wait_for(f"garbage collection of {sorted(before)}", lambda: owned(ns, uid) == [], timeout=120, interval=0.5)
    selector = f"{CONTRACT['kube']['LABEL_INSTANCE']}={NAME}"
    wait_for("the pods to go away", lambda: kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"] == [],
             timeout=120, interval=0.5)
