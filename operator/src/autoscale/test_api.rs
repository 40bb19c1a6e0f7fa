//! Test-only: a scripted API server for the autoscaler's mock-API tests. Every
//! request is checked for method, path with query, content type and body, in
//! order, and answered the way a real API server would.
use crate::resources::PushCluster;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;
use tower_test::mock::{Handle, pair};

pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One expected request and the answer to give.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Option<Value>,
    pub respond: Value,
}

/// Plays the API server: answers `calls` in order, failing on any difference.
/// Returns every (method, path) seen, so the caller can assert nothing else came.
pub async fn serve_calls(mut handle: ApiHandle, calls: Vec<Call>) -> Vec<String> {
    let mut seen = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i} ({} {}) never came", call.method, call.path))
            .expect("client dropped");
        let uri = request.uri().to_string();
        seen.push(format!("{} {uri}", request.method()));
        assert_eq!(request.method(), call.method, "call {i}: {uri}");
        assert_eq!(uri, call.path, "call {i}");
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        assert_eq!(
            content_type.as_deref(),
            call.content_type,
            "call {i}: {uri}"
        );
        let bytes = request.into_body().collect_bytes().await.expect("body");
        match call.body {
            Some(want) => {
                let got: Value = serde_json::from_slice(&bytes).expect("json body");
                assert_eq!(got, want, "call {i}: body of {uri}");
            }
            None => assert!(bytes.is_empty(), "call {i}: unexpected body on {uri}"),
        }
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&call.respond).expect("json")))
                .expect("response"),
        );
    }
    // Nothing more may come.
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!(
            "unexpected extra call {} {}",
            request.method(),
            request.uri()
        );
    }
    seen
}

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
pub const MERGE: Option<&str> = Some("application/merge-patch+json");
pub const APPLY: Option<&str> = Some("application/apply-patch+yaml");

const SCALE_PATCH: &str = "/apis/pushcluster.dev/v1alpha1/namespaces/apps/pushclusters/chat/scale?&fieldManager=pushcluster-autoscaler";

/// A GET with no body.
pub fn get(path: &str, respond: Value) -> Call {
    Call {
        method: Method::GET,
        path: path.to_string(),
        content_type: None,
        body: None,
        respond,
    }
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
    Call {
        method: Method::PATCH,
        path: SCALE_PATCH.to_string(),
        content_type: MERGE,
        body: Some(json!({ "spec": { "replicas": replicas } })),
        respond: json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": { "name": "chat", "namespace": "apps" },
            "spec": { "replicas": replicas }
        }),
    }
}

/// The merge patch setting (`Some`) or clearing (`None`) a pod's deletion cost.
pub fn deletion_cost_patch(pod: &str, cost: Option<&str>, respond: Value) -> Call {
    Call {
        method: Method::PATCH,
        path: format!("/api/v1/namespaces/apps/pods/{pod}?&fieldManager=pushcluster-autoscaler"),
        content_type: MERGE,
        body: Some(
            json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":cost}}}),
        ),
        respond,
    }
}

pub fn cluster(autoscaling: &str, replicas: i32) -> PushCluster {
    let yaml = format!(
        "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: chat, namespace: apps}}\nspec:\n  replicas: {replicas}\n  autoscaling: {autoscaling}\n"
    );
    serde_yaml_ng::from_str(&yaml).expect("PushCluster yaml")
}
