//! Mock-API tests of the scale-in path: the least-loaded pods are marked with
//! pod-deletion-cost before the Deployment's replicas drop.
use super::super::*;
use crate::autoscale::fixtures::api::*;
use crate::autoscale::fixtures::pods::fake_pods;
use crate::autoscale::scrape::client as scrape_client;
use http::Method;
use serde_json::Value;

#[tokio::test]
async fn scale_in_marks_victims_before_the_deployment_replicas_drop() {
    let (port, ips) = fake_pods(&[40, 3, 25]).await;
    let (client, handle) = mock_client();
    let pod = |i: usize, cost| pod_json(&format!("chat-{i}"), &ips[i], cost);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "chat", "namespace": "apps" },
        "spec": { "replicas": 1 }
    });
    let calls = vec![
        pods_list(vec![pod(0, Some("-1")), pod(1, None), pod(2, None)]),
        deletion_cost_patch("chat-1", Some("-2"), pod(1, Some("-2"))),
        deletion_cost_patch("chat-2", Some("-1"), pod(2, Some("-1"))),
        // chat-0 carries a stale mark from an earlier step and is the busiest: cleared.
        deletion_cost_patch("chat-0", None, pod(0, None)),
        crate::fixtures::request(
            Method::PATCH,
            "/apis/apps/v1/namespaces/apps/deployments/chat?&force=true&fieldManager=pushcluster-operator",
        )
        .content_type(APPLY)
        .body(deployment.clone())
        .reply(200, deployment.clone()),
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
        get(DEPLOYMENT_GET, deployment_json(2)),
        pods_list(ready_pods(&ips)),
        deletion_cost_patch(
            "chat-a",
            Some("-1"),
            pod_json("chat-a", &ips[0], Some("-1")),
        ),
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
        let (client, handle) = mock_client();
        let server = tokio::spawn(serve_calls(
            handle,
            vec![crate::fixtures::request(Method::GET, DEPLOYMENT_GET).reply(status, live)],
        ));
        let victims = Autoscaler::new(9090)
            .before_deployment_apply(&client, "apps", "chat", SELECTOR, 2)
            .await
            .expect("hook");
        server.await.unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert!(victims.is_empty(), "case: {case}");
    }
}
