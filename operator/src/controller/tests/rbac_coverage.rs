//! The RBAC table covers every request of every controller scenario, and every
//! reconcile entry of the table is used by one (so the table cannot drift).

use super::calls::*;
use super::*;
use http::Method;
use serde_json::{Value, json};

/// (group, resource, verb) of a request, as the API server's authorizer sees it;
/// `None` for discovery (non-resource URLs every authenticated user may read).
fn authorization(seen: &Seen) -> Option<(String, String, String)> {
    let parts: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, named) = match rest {
        ["namespaces", _, resource] => (resource.to_string(), false),
        ["namespaces", _, resource, _name] => (resource.to_string(), true),
        ["namespaces", _, resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let verb = match (&seen.method, named) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        // Server-side apply that created the object is authorized as create.
        (&Method::PATCH, _) if seen.status == 201 => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::PUT, _) => "update",
        (&Method::DELETE, _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

fn switched_cluster() -> PushCluster {
    cluster("{redis: {external: {url: 'redis://external:6379', passwordSecretRef: {name: redis-auth, key: password}}}, exposure: {host: push.example.com, ingress: {className: nginx}}}")
        .generation(3)
        .observed(2)
}

#[tokio::test]
async fn rbac_table_covers_every_request_and_every_reconcile_entry_is_used() {
    let mut seen = Vec::new();
    let scenarios: Vec<(PushCluster, Scenario)> = vec![
        (cluster("{}"), create_from_nothing()),
        (cluster("{image: 'example.com/push:2'}").generation(2).observed(1), image_change()),
        (
            cluster("{redis: {external: {url: 'redis://external:6379', passwordSecretRef: {name: redis-auth, key: password}}}, exposure: {host: push.example.com, ingress: {className: nginx}}}")
                .generation(3)
                .observed(2),
            exposure_and_redis_switch(false),
        ),
        (switched_cluster(), exposure_and_redis_switch(true)),
        (gateway_cluster(), gateway_applied(false, false)),
        (gateway_cluster(), gateway_applied(true, true)),
        (cluster("{auth: {jwt: {secretRef: {name: jwt-key, key: secret}}}}"), missing_secret()),
        (
            cluster("{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}").observed(1),
            gateway_api_missing(),
        ),
        (cluster("{redis: {managed: {}, external: {url: 'redis://r'}}}"), invalid_spec(true)),
        (
            cluster("{redis: {managed: {persistence: {size: 1Gi}}}}").generation(2).observed(1),
            persistence_turned_on(),
        ),
    ];
    for (pc, scenario) in scenarios {
        let (ctx, handle) = context();
        let (_, calls) = run(ctx, handle, pc, scenario).await;
        seen.extend(calls);
    }
    // Two failing attempts on one controller: the Recorder's event-series patch.
    let (ctx, handle) = context();
    let failing = gateway_cluster();
    let (_, calls, verifier) = run_keeping(
        ctx.clone(),
        ApiServerVerifier(handle),
        failing.clone(),
        api_error(true),
    )
    .await;
    seen.extend(calls);
    let (_, calls, _) = run_keeping(ctx, verifier, failing, api_error(false)).await;
    seen.extend(calls);
    let used: Vec<(String, String, String)> = seen.iter().filter_map(authorization).collect();
    for (group, resource, verb) in &used {
        assert!(
            rbac::allows(group, resource, verb),
            "request not covered by rbac::PERMISSIONS: {group}/{resource} {verb}"
        );
    }
    for p in rbac::PERMISSIONS
        .iter()
        .filter(|p| p.purpose == rbac::Purpose::Reconcile)
    {
        assert!(
            used.iter()
                .any(|(g, r, v)| g == p.group && r == p.resource && v == p.verb),
            "rbac::PERMISSIONS entry never used by a scenario (remove it or add a scenario): {p:?}"
        );
    }
}

/// A push-server pod as the API server lists it: Ready, with an IP.
fn listed_pod(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
           "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Scenario: spec.replicas lowered 2 -> 1 (kubectl scale, an HPA or the autoscaler) with
/// the autoscaler configured: the pod with the fewest connections is marked with a low
/// pod-deletion-cost BEFORE the Deployment apply lowers the replicas; the step after the
/// apply only measures (no spec.autoscaling) and status.connections carries the total.
fn scale_in(ips: &[String]) -> Scenario {
    let selector = "&labelSelector=app.kubernetes.io%2Fcomponent%3Dpush-server%2Capp.kubernetes.io%2Finstance%3Dchat%2Capp.kubernetes.io%2Fname%3Dpushcluster";
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
                      "items": [listed_pod("chat-a", &ips[0]), listed_pod("chat-b", &ips[1])]});
    let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "chat", "namespace": "ns"}, "spec": {"replicas": 2,
                      "selector": {"matchLabels": {"app": "x"}}, "template": {"spec": {"containers": []}}}});
    scenario(vec![
        generated_secrets_present(),
        managed_redis_reapplied(),
        services_reapplied(),
        vec![
        call(Method::GET, &format!("{APPS}/deployments/chat")).reply(200, live),
        call(Method::GET, &format!("{NS_API}/pods")).query(selector).reply(200, pods.clone()),
        call(Method::PATCH, &format!("{NS_API}/pods/chat-b"))
            .query("&fieldManager=pushcluster-autoscaler")
            .check(|body| {
                assert_eq!(
                    body,
                    &json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1"}}})
                );
            })
            .echo(200),
        event("ScaleIn", "Normal").check(|body| {
            assert!(body["note"].as_str().is_some_and(|n| n.ends_with(": chat-b")), "{body}");
        }),
        ssa_deployment(false, |body| assert_eq!(body["spec"]["replicas"], 1)),
        ssa_pdb(false),
absent(NS_API, "services", "chat-redis-pods"),
absent(NS_API, "services", "chat-redis-sentinel"),
absent(APPS, "statefulsets", "chat-redis-sentinel"),
absent(POLICY, "poddisruptionbudgets", "chat-redis-sentinel"),
absent(NET, "networkpolicies", "chat-redis-sentinel"),
        absent(NET, "ingresses", "chat"),
        absent(GATEWAY, "httproutes", "chat"),
        call(Method::GET, &format!("{NS_API}/pods")).query(selector).reply(200, pods),
        status_patch(|body| {
            assert_eq!(body["status"]["connections"], 29);
            assert_eq!(body["status"]["autoscaler"]["podsMeasured"], 2);
        }),
        event("Updated", "Normal"),
        ],
    ])
}

#[tokio::test]
async fn scale_in_marks_the_least_loaded_pod_before_the_deployment_apply() {
    let (port, ips) = crate::autoscale::fixtures::pods::fake_pods(&[25, 4]).await;
    let (client, handle) = mock_client();
    let autoscaler = Arc::new(crate::autoscale::Autoscaler::new(port));
    let ctx = Arc::new(Context::new(
        client,
        Some("operator-0".into()),
        Arc::new(Metrics::default()),
        Some(autoscaler),
    ));
    let pc = cluster("{replicas: 1}").generation(2).observed(1);
    let (result, seen) = run(ctx, handle, pc, scale_in(&ips)).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(crate::autoscale::STEP_INTERVAL)
    );
    for (group, resource, verb) in seen.iter().filter_map(authorization) {
        assert!(
            rbac::allows(&group, &resource, &verb),
            "not in rbac::PERMISSIONS: {group}/{resource} {verb}"
        );
    }
}
