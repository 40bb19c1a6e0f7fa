//! Test-only helpers (controller-rs style): PushClusters from short inline
//! YAML, and an [`ApiServerVerifier`] that plays the API server over
//! tower-test's `mock::pair`, asserting method, path, query and body of every
//! request in the order a [`Scenario`] lists them, with a timeout that catches
//! calls that never come (or a reconcile waiting on an unexpected call).

use crate::resources::PushCluster;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;

pub type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long a scenario may take before it counts as hung.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(10);

/// A PushCluster from the YAML of its spec (name `chat`, namespace `ns`, uid `uid-1`).
pub fn cluster(spec: &str) -> PushCluster {
    let yaml = format!(
        "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: chat, namespace: ns, uid: uid-1, generation: 1, resourceVersion: '10'}}\nspec: {spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture yaml parses")
}

/// Chainable changes of a test PushCluster.
pub trait PushClusterExt {
    fn generation(self, generation: i64) -> Self;
    fn observed(self, generation: i64) -> Self;
    fn deleted(self) -> Self;
    /// With the pause annotation set to `value`.
    fn pause_annotation(self, value: &str) -> Self;
}

impl PushClusterExt for PushCluster {
    fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }
    /// As if a previous reconcile wrote status.observedGeneration.
    fn observed(mut self, generation: i64) -> Self {
        self.status
            .get_or_insert_with(Default::default)
            .observed_generation = Some(generation);
        self
    }
    fn pause_annotation(mut self, value: &str) -> Self {
        self.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                crate::resources::PAUSED_ANNOTATION.to_string(),
                value.to_string(),
            );
        self
    }
    fn deleted(mut self) -> Self {
        self.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        self
    }
}

pub fn mock_client() -> (Client, ApiServerHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One expected request and the answer the fake API server gives.
pub struct Call {
    pub method: Method,
    pub path: String,
    /// `path` is a prefix (names the API server generates, e.g. Events).
    pub path_is_prefix: bool,
    /// The exact query string (`None`: no query).
    pub query: Option<String>,
    /// Extra checks of the JSON body (`Value::Null` when there is none).
    pub check: Box<dyn Fn(&Value) + Send>,
    pub status: u16,
    /// Response body; `None` echoes the request body back.
    pub response: Option<Value>,
    /// The response computed from the request body (wins over `response`): what the API
    /// server returns for an apply, plus what others wrote (e.g. a status).
    pub respond: Option<fn(&Value) -> Value>,
    /// A plain-text body instead (wins over `response`): what the real API server
    /// answers for an API group it does not serve, `404 page not found`.
    pub text: Option<&'static str>,
    /// The exact Content-Type the request must carry (`None`: not checked, except
    /// that a PATCH names one).
    pub content_type: Option<&'static str>,
}

/// A request as the verifier saw it, for the RBAC coverage check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub status: u16,
}

pub fn not_found(what: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{what} not found"), "reason": "NotFound", "code": 404})
}

/// The expected calls of one reconcile, in order.
pub struct Scenario(pub Vec<Call>);

pub struct ApiServerVerifier(pub ApiServerHandle);

impl ApiServerVerifier {
    /// Answer every call of the scenario in order; returns what was seen and
    /// the verifier (for a next reconcile on the same client).
    pub async fn run(mut self, scenario: Scenario) -> (Vec<Seen>, Self) {
        let mut seen = Vec::new();
        for (i, call) in scenario.0.into_iter().enumerate() {
            let (request, send) = tokio::time::timeout(SCENARIO_TIMEOUT, self.0.next_request())
                .await
                .unwrap_or_else(|_| panic!("call {i} never came: {} {}", call.method, call.path))
                .unwrap_or_else(|| {
                    panic!(
                        "client dropped before call {i}: {} {}",
                        call.method, call.path
                    )
                });
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_string();
            let path_matches = if call.path_is_prefix {
                path.starts_with(&call.path)
            } else {
                path == call.path
            };
            assert!(
                parts.method == call.method && path_matches,
                "call {i}: got {} {path}, want {} {}",
                parts.method,
                call.method,
                call.path
            );
            assert_eq!(
                parts.uri.query().map(String::from),
                call.query,
                "call {i}: query of {} {}",
                call.method,
                call.path
            );
            let bytes = body.collect_bytes().await.expect("request body");
            let value: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("request body is JSON")
            };
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            if let Some(want) = call.content_type {
                assert_eq!(
                    content_type,
                    Some(want),
                    "call {i}: {} {path}",
                    parts.method
                );
            }
            if parts.method == Method::PATCH {
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                assert!(
                    content_type.is_some_and(|c| c.starts_with("application/")),
                    "call {i}: content type {content_type:?}"
                );
            }
            (call.check)(&value);
            let body = match call.text {
                Some(text) => text.as_bytes().to_vec(),
                None => {
                    let response = match call.respond {
                        Some(respond) => respond(&value),
                        None => call.response.unwrap_or_else(|| value.clone()),
                    };
                    serde_json::to_vec(&response).expect("response serializes")
                }
            };
            seen.push(Seen {
                method: parts.method,
                path: parts.uri.path().to_string(),
                status: call.status,
            });
            send.send_response(
                Response::builder()
                    .status(call.status)
                    .body(Body::from(body))
                    .expect("response"),
            );
        }
        (seen, self)
    }

    /// Fails if any request arrives within a short while: the scenario was all.
    pub async fn assert_no_more_calls(mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(300), self.0.next_request()).await
        {
            panic!(
                "unexpected extra call {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

/// Plays `calls` in order, then asserts nothing else came.
pub async fn serve_exactly(handle: ApiServerHandle, calls: Vec<Call>) -> Vec<Seen> {
    let (seen, verifier) = ApiServerVerifier(handle).run(Scenario(calls)).await;
    verifier.assert_no_more_calls().await;
    seen
}

/// Build calls tersely.
pub fn call(method: Method, path: &str) -> Call {
    Call {
        method,
        path: path.to_string(),
        path_is_prefix: false,
        query: None,
        check: Box::new(|_| {}),
        status: 200,
        response: Some(json!({})),
        respond: None,
        text: None,
        content_type: None,
    }
}

/// A call from a full request target, `path?query` as the client sends it.
pub fn request(method: Method, target: &str) -> Call {
    match target.split_once('?') {
        Some((path, query)) => call(method, path).query(query),
        None => call(method, target),
    }
}

impl Call {
    pub fn path_prefix(mut self) -> Self {
        self.path_is_prefix = true;
        self
    }
    pub fn query(mut self, query: &str) -> Self {
        self.query = Some(query.to_string());
        self
    }
    pub fn check(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Box::new(check);
        self
    }
    /// The real API server's answer for a group or resource it does not serve: a
    /// plain-text 404, not a `Status` object.
    pub fn unserved(mut self) -> Self {
        self.status = 404;
        self.text = Some("404 page not found\n");
        self
    }
    pub fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }
    /// The request body must be exactly `want`.
    pub fn body(self, want: Value) -> Self {
        self.check(move |got| assert_eq!(got, &want, "request body"))
    }
    pub fn reply(mut self, status: u16, body: Value) -> Self {
        self.status = status;
        self.response = Some(body);
        self
    }
    /// Echo the request body back (what SSA returns), with `status`.
    pub fn echo(mut self, status: u16) -> Self {
        self.status = status;
        self.response = None;
        self
    }

    /// Answers `respond(request body)`.
    pub fn respond(mut self, status: u16, respond: fn(&Value) -> Value) -> Self {
        self.status = status;
        self.respond = Some(respond);
        self
    }
}
