//! Test-only: the autoscaler's requests for the one mock API server of the
//! crate ([`crate::fixtures`]): method, path with query, content type and body,
//! answered the way a real API server would.
pub use crate::fixtures::Call;
use crate::fixtures::request;
use crate::resources::PushCluster;
use http::Method;
use serde_json::{Value, json};

pub use crate::fixtures::{mock_client, serve_exactly as serve_calls};

pub fn pod_json(name: &str, ip: &str, cost: Option<&str>) -> Value {
    let mut meta = json!({ "name": name, "namespace": "apps" });
    if let Some(c) = cost {
        meta["annotations"] = json!({ "controller.kubernetes.io/pod-deletion-cost": c });
    }
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "status": { "podIP": ip, "conditions": [{ "type": "Ready", "status": "True" }] }
    })
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

pub const SELECTOR: &str =
    "app.kubernetes.io/instance=chat,app.kubernetes.io/component=push-server";
pub const PODS_LIST: &str = "/api/v1/namespaces/apps/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dchat%2Capp.kubernetes.io%2Fcomponent%3Dpush-server";
pub const HPA_LIST: &str = "/apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers?";
pub const MERGE: &str = "application/merge-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";

const SCALE_PATCH: &str = "/apis/pushcluster.dev/v1alpha1/namespaces/apps/pushclusters/chat/scale?&fieldManager=pushcluster-autoscaler";

/// A GET with no body.
pub fn get(path: &str, respond: Value) -> Call {
    request(Method::GET, path)
        .check(|body| assert_eq!(body, &Value::Null, "a GET has no body"))
        .reply(200, respond)
}

/// The autoscaler's list of the cluster's pods, answered with `pods`.
pub fn pods_list(pods: Vec<Value>) -> Call {
    get(PODS_LIST, list("PodList", pods))
}

/// Ready pods `chat-a`, `chat-b`, ... at `ips`, without a deletion cost.
pub fn ready_pods(ips: &[String]) -> Vec<Value> {
    ips.iter()
        .zip('a'..)
        .map(|(ip, letter)| pod_json(&format!("chat-{letter}"), ip, None))
        .collect()
}

/// The check for an HPA targeting the cluster, answered with `hpas`.
pub fn hpa_list(hpas: Vec<Value>) -> Call {
    get(HPA_LIST, list("HorizontalPodAutoscalerList", hpas))
}

/// The merge patch of the PushCluster's scale subresource to `replicas`.
pub fn scale_patch(replicas: i32) -> Call {
    request(Method::PATCH, SCALE_PATCH)
        .content_type(MERGE)
        .body(json!({ "spec": { "replicas": replicas } }))
        .reply(
            200,
            json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": { "name": "chat", "namespace": "apps" },
                "spec": { "replicas": replicas }
            }),
        )
}

/// The merge patch setting (`Some`) or clearing (`None`) a pod's deletion cost.
pub fn deletion_cost_patch(pod: &str, cost: Option<&str>, respond: Value) -> Call {
    request(
        Method::PATCH,
        &format!("/api/v1/namespaces/apps/pods/{pod}?&fieldManager=pushcluster-autoscaler"),
    )
    .content_type(MERGE)
    .body(json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":cost}}}))
    .reply(200, respond)
}

pub fn cluster(autoscaling: &str, replicas: i32) -> PushCluster {
    let yaml = format!(
        "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: chat, namespace: apps}}\nspec:\n  replicas: {replicas}\n  autoscaling: {autoscaling}\n"
    );
    serde_yaml_ng::from_str(&yaml).expect("PushCluster yaml")
}
