//! Mock-API tests of the scale path: every request the operator makes is
//! checked for method, path with query, content type and body, in order, and
//! answered the way a real API server would. Pods' /metrics are real HTTP
//! servers on loopback addresses (127.0.0.x, one port), standing in for pod IPs.
use super::*;
use crate::autoscale::scrape::client as scrape_client;
use crate::autoscale::test_pods::fake_pods;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{Handle, pair};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One expected request and the answer to give.
struct Call {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Option<Value>,
    respond: Value,
}

/// Plays the API server: answers `calls` in order, failing on any difference.
/// Returns every (method, path) seen, so the caller can assert nothing else came.
async fn serve_calls(mut handle: ApiHandle, calls: Vec<Call>) -> Vec<String> {
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

fn pod_json(name: &str, ip: &str, cost: Option<&str>) -> Value {
    let mut meta = json!({ "name": name, "namespace": "apps" });
    if let Some(c) = cost {
        meta["annotations"] = json!({ "controller.kubernetes.io/pod-deletion-cost": c });
    }
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "status": { "podIP": ip, "conditions": [{ "type": "Ready", "status": "True" }] }
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

const SELECTOR: &str = "app.kubernetes.io/instance=chat,app.kubernetes.io/component=push-server";
const PODS_LIST: &str = "/api/v1/namespaces/apps/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dchat%2Capp.kubernetes.io%2Fcomponent%3Dpush-server";
const HPA_LIST: &str = "/apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers?";
const MERGE: Option<&str> = Some("application/merge-patch+json");
const APPLY: Option<&str> = Some("application/apply-patch+yaml");

fn cluster(autoscaling: &str, replicas: i32) -> PushCluster {
    let yaml = format!(
        "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: chat, namespace: apps}}\nspec:\n  replicas: {replicas}\n  autoscaling: {autoscaling}\n"
    );
    serde_yaml_ng::from_str(&yaml).expect("PushCluster yaml")
}

#[tokio::test]
async fn scale_in_marks_victims_before_the_deployment_replicas_drop() {
    let (port, ips) = fake_pods(&[40, 3, 25]).await;
    let (client, handle) = mock_client();
    let pod = |i: usize, cost| pod_json(&format!("chat-{i}"), &ips[i], cost);
    let pods_list = list(
        "PodList",
        vec![pod(0, Some("-1")), pod(1, None), pod(2, None)],
    );
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "chat", "namespace": "apps" },
        "spec": { "replicas": 1 }
    });
    let calls = vec![
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: pods_list,
        },
        Call {
            method: Method::PATCH,
            path: "/api/v1/namespaces/apps/pods/chat-1?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(
                json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-2"}}}),
            ),
            respond: pod(1, Some("-2")),
        },
        Call {
            method: Method::PATCH,
            path: "/api/v1/namespaces/apps/pods/chat-2?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(
                json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-1"}}}),
            ),
            respond: pod(2, Some("-1")),
        },
        // chat-0 carries a stale mark from an earlier step and is the busiest: cleared.
        Call {
            method: Method::PATCH,
            path: "/api/v1/namespaces/apps/pods/chat-0?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(
                json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":null}}}),
            ),
            respond: pod(0, None),
        },
        Call {
            method: Method::PATCH,
            path: "/apis/apps/v1/namespaces/apps/deployments/chat?&force=true&fieldManager=pushcluster-operator",
            content_type: APPLY,
            body: Some(deployment.clone()),
            respond: deployment.clone(),
        },
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    let http = scrape_client(Duration::from_secs(1));
    // The controller's order: mark, then apply the Deployment with fewer replicas.
    let victims = prepare_scale_in(&pods, &http, port, SELECTOR, 3, 1)
        .await
        .expect("scale-in prepared");
    assert_eq!(
        victims,
        vec!["chat-1", "chat-2"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, "apps");
    deployments
        .patch(
            "chat",
            &kube::api::PatchParams::apply("pushcluster-operator").force(),
            &Patch::Apply(&deployment),
        )
        .await
        .expect("deployment applied");
    server.await.expect("api server");
}

#[tokio::test]
async fn step_scales_up_through_the_scale_subresource() {
    let (port, ips) = fake_pods(&[300, 290]).await;
    let (client, handle) = mock_client();
    let pc = cluster(
        "{enabled: true, minReplicas: 1, maxReplicas: 10, targetConnectionsPerPod: 100}",
        2,
    );
    let pods_list = list(
        "PodList",
        vec![
            pod_json("chat-a", &ips[0], None),
            pod_json("chat-b", &ips[1], None),
        ],
    );
    let scale = json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "chat", "namespace": "apps" },
        "spec": { "replicas": 6 }, "status": { "replicas": 2 }
    });
    let calls = vec![
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: pods_list,
        },
        Call {
            method: Method::GET,
            path: HPA_LIST,
            content_type: None,
            body: None,
            respond: list("HorizontalPodAutoscalerList", vec![]),
        },
        Call {
            method: Method::PATCH,
            path: "/apis/pushcluster.dev/v1alpha1/namespaces/apps/pushclusters/chat/scale?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(json!({ "spec": { "replicas": 6 } })),
            respond: scale,
        },
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let report = Autoscaler::new(port)
        .step(&client, &pc, SELECTOR)
        .await
        .expect("step");
    server.await.expect("api server");
    assert_eq!(report.connections, Some(590));
    assert_eq!(report.status.recommended_replicas, Some(6));
    assert_eq!(
        (report.status.pods_measured, report.status.pods_unmeasured),
        (2, 0)
    );
    assert!(report.status.last_scale_time.is_some());
    let event = report.event.expect("an event for the scale-up");
    assert_eq!((event.warning, event.reason), (false, "ScaledUp"));
    assert!(event.note.starts_with("scale up 2 -> 6"), "{}", event.note);
}

#[tokio::test]
async fn step_does_not_fight_an_hpa_targeting_the_cluster() {
    let (port, ips) = fake_pods(&[300, 290]).await;
    let (client, handle) = mock_client();
    let pc = cluster("{enabled: true, targetConnectionsPerPod: 100}", 2);
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "keda-hpa-chat", "namespace": "apps" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster", "name": "chat" },
            "maxReplicas": 10
        }
    });
    let calls = vec![
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: list(
                "PodList",
                vec![
                    pod_json("chat-a", &ips[0], None),
                    pod_json("chat-b", &ips[1], None),
                ],
            ),
        },
        // No PATCH of the scale subresource may follow.
        Call {
            method: Method::GET,
            path: HPA_LIST,
            content_type: None,
            body: None,
            respond: list("HorizontalPodAutoscalerList", vec![hpa]),
        },
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let report = Autoscaler::new(port)
        .step(&client, &pc, SELECTOR)
        .await
        .expect("step");
    server.await.expect("api server");
    let event = report.event.expect("a warning");
    assert_eq!(
        (event.warning, event.reason),
        (true, "ExternalScalerConflict")
    );
    assert!(event.note.contains("keda-hpa-chat"), "{}", event.note);
    assert_eq!(report.status.recommended_replicas, Some(6));
    assert!(report.status.last_scale_time.is_none());
}

#[tokio::test]
async fn step_with_autoscaling_off_only_measures() {
    let (port, ips) = fake_pods(&[7, 5]).await;
    let (client, handle) = mock_client();
    let pc = cluster("{enabled: false}", 2);
    let calls = vec![Call {
        method: Method::GET,
        path: PODS_LIST,
        content_type: None,
        body: None,
        respond: list(
            "PodList",
            vec![
                pod_json("chat-a", &ips[0], None),
                pod_json("chat-b", &ips[1], None),
            ],
        ),
    }];
    let server = tokio::spawn(serve_calls(handle, calls));
    let report = Autoscaler::new(port)
        .step(&client, &pc, SELECTOR)
        .await
        .expect("step");
    server.await.expect("api server");
    assert_eq!(report.connections, Some(12));
    assert_eq!(report.plan, None);
    assert_eq!(report.event, None);
}

#[test]
fn external_scaler_matches_kind_group_and_name() {
    let hpa = |api_version: &str, kind: &str, name: &str| -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": { "name": format!("h-{kind}-{name}") },
            "spec": { "scaleTargetRef": { "apiVersion": api_version, "kind": kind, "name": name }, "maxReplicas": 3 }
        }))
        .expect("hpa")
    };
    let cases = [
        (
            "targets this PushCluster",
            hpa("pushcluster.dev/v1alpha1", "PushCluster", "chat"),
            true,
        ),
        (
            "another PushCluster",
            hpa("pushcluster.dev/v1alpha1", "PushCluster", "other"),
            false,
        ),
        (
            "a Deployment of the same name",
            hpa("apps/v1", "Deployment", "chat"),
            false,
        ),
        (
            "same kind in another group",
            hpa("example.com/v1", "PushCluster", "chat"),
            false,
        ),
    ];
    for (case, h, want) in cases {
        assert_eq!(
            external_scaler(&[h], "chat").is_some(),
            want,
            "case: {case}"
        );
    }
}

#[test]
fn decisions_are_at_most_one_per_gap() {
    let t0 = Instant::now();
    let cases = [
        ("never decided: due", None, t0, true),
        (
            "just decided: not due",
            Some(t0),
            t0 + Duration::from_secs(1),
            false,
        ),
        ("one gap later: due", Some(t0), t0 + MIN_DECISION_GAP, true),
    ];
    for (case, last, now, want) in cases {
        assert_eq!(decision_due(last, now), want, "case: {case}");
    }
}

#[tokio::test]
async fn a_second_reconcile_within_the_gap_measures_but_does_not_decide() {
    let (port, ips) = fake_pods(&[10, 10]).await;
    let (client, handle) = mock_client();
    let pc = cluster(
        "{enabled: true, targetConnectionsPerPod: 100, scaleDownStabilizationSeconds: 0}",
        2,
    );
    let pods = || {
        list(
            "PodList",
            vec![
                pod_json("chat-a", &ips[0], None),
                pod_json("chat-b", &ips[1], None),
            ],
        )
    };
    let scale = json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "chat", "namespace": "apps" }, "spec": { "replicas": 1 }
    });
    let calls = vec![
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: pods(),
        },
        Call {
            method: Method::GET,
            path: HPA_LIST,
            content_type: None,
            body: None,
            respond: list("HorizontalPodAutoscalerList", vec![]),
        },
        Call {
            method: Method::PATCH,
            path: "/apis/pushcluster.dev/v1alpha1/namespaces/apps/pushclusters/chat/scale?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(json!({ "spec": { "replicas": 1 } })),
            respond: scale,
        },
        // The reconcile the replica change triggers: pods only, no second scale-in.
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: pods(),
        },
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let autoscaler = Autoscaler::new(port);
    let first = autoscaler
        .step(&client, &pc, SELECTOR)
        .await
        .expect("first step");
    assert_eq!(first.plan.map(|p| p.replicas), Some(1));
    let mut again = pc.clone();
    again.spec.replicas = 2; // as if the watch event raced the write: still 2
    let second = autoscaler
        .step(&client, &again, SELECTOR)
        .await
        .expect("second step");
    server.await.expect("api server");
    assert_eq!(second.plan, None);
    assert_eq!(second.connections, Some(20));
}

fn deployment_json(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "chat", "namespace": "apps" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "x" } },
                  "template": { "metadata": { "labels": { "app": "x" } }, "spec": { "containers": [] } } }
    })
}

const DEPLOYMENT_GET: &str = "/apis/apps/v1/namespaces/apps/deployments/chat";

#[tokio::test]
async fn hook_marks_the_lightest_pod_when_the_deployment_shrinks() {
    let (port, ips) = fake_pods(&[9, 30]).await;
    let (client, handle) = mock_client();
    let calls = vec![
        Call {
            method: Method::GET,
            path: DEPLOYMENT_GET,
            content_type: None,
            body: None,
            respond: deployment_json(2),
        },
        Call {
            method: Method::GET,
            path: PODS_LIST,
            content_type: None,
            body: None,
            respond: list(
                "PodList",
                vec![
                    pod_json("chat-a", &ips[0], None),
                    pod_json("chat-b", &ips[1], None),
                ],
            ),
        },
        Call {
            method: Method::PATCH,
            path: "/api/v1/namespaces/apps/pods/chat-a?&fieldManager=pushcluster-autoscaler",
            content_type: MERGE,
            body: Some(
                json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-1"}}}),
            ),
            respond: pod_json("chat-a", &ips[0], Some("-1")),
        },
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let victims = Autoscaler::new(port)
        .before_deployment_apply(&client, "apps", "chat", SELECTOR, 1)
        .await
        .expect("hook");
    server.await.expect("api server");
    assert_eq!(victims, vec!["chat-a".to_string()]);
}

#[tokio::test]
async fn hook_does_nothing_more_when_not_shrinking_or_not_created() {
    for (case, live, status) in [
        ("same replicas", deployment_json(2), 200),
        ("more replicas", deployment_json(1), 200),
        (
            "no Deployment yet",
            json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}),
            404,
        ),
    ] {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a GET");
            assert_eq!(
                (request.method(), request.uri().to_string()),
                (&Method::GET, DEPLOYMENT_GET.to_string())
            );
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&live).expect("json")))
                    .expect("response"),
            );
            let extra =
                tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
            assert!(!matches!(extra, Ok(Some(_))), "unexpected extra call");
        });
        let victims = Autoscaler::new(9090)
            .before_deployment_apply(&client, "apps", "chat", SELECTOR, 2)
            .await
            .expect("hook");
        server.await.unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert!(victims.is_empty(), "case: {case}");
    }
}
