//! The controller against a mock API server: every request's method, path,
//! query and body as a real API server would see them, in order.

use super::*;
use crate::controller::rollout::{Admission, QUEUE_POLL, RolloutGate};
use crate::fixtures::*;
use calls::*;
use http::Method;
use serde_json::json;
use std::time::Duration;

/// Scenario: create from nothing (managed Redis, service exposure).
pub(super) fn create_from_nothing() -> Scenario {
    Scenario(
        vec![
            secret_absent("chat-api-token"),
            secret_create("chat-api-token", "token"),
            secret_absent("chat-redis-password"),
            secret_create("chat-redis-password", "password"),
            event("SecretCreated", "Normal").check(|body| {
                assert_eq!(
                    body["note"],
                    "generated Secret(s) chat-api-token, chat-redis-password"
                );
            }),
        ]
        .into_iter()
        .chain(managed_redis_applied(true))
        .chain([
            ssa(NS_API, "services", "chat", "Service", true).check(|body| {
                assert_eq!(body["spec"]["sessionAffinity"], "ClientIP");
            }),
            ssa(NS_API, "services", "chat-api", "Service", true).check(|body| {
                assert_eq!(body["spec"]["type"], "ClusterIP");
                assert_eq!(body["spec"]["ports"][0]["targetPort"], "admin");
                assert_eq!(body["spec"]["ports"].as_array().map(Vec::len), Some(1));
            }),
            ssa(NS_API, "services", "chat-headless", "Service", true),
            ssa_deployment(true, |body| {
                assert_eq!(body["spec"]["replicas"], 2);
            }),
            ssa_pdb(true),
            absent(NS_API, "services", "chat-redis-pods"),
            absent(NS_API, "services", "chat-redis-sentinel"),
            absent(APPS, "statefulsets", "chat-redis-sentinel"),
            absent(POLICY, "poddisruptionbudgets", "chat-redis-sentinel"),
            absent(NET, "networkpolicies", "chat-redis-sentinel"),
            // An Ingress of the same name owned by something else is left alone.
            owned(
                NET,
                "ingresses",
                "chat",
                "networking.k8s.io/v1",
                "Ingress",
                "someone-else",
            ),
            // No Gateway API CRDs on this cluster: the real server's plain-text 404.
            unserved(GATEWAY, "httproutes", "chat"),
            status_patch(|body| {
                assert_eq!(body["status"]["observedGeneration"], 1);
                assert_eq!(body["status"]["readyReplicas"], 2);
                assert_eq!(body["status"]["endpoint"], "http://chat.ns.svc:3000");
                assert!(
                    body["status"]["selector"]
                        .as_str()
                        .is_some_and(|s| s.contains("app.kubernetes.io/instance=chat"))
                );
                assert_eq!(condition(body, "Ready")["status"], "True");
                assert_eq!(condition(body, "RedisReady")["reason"], "Running");
            }),
            event("Created", "Normal"),
        ])
        .collect(),
    )
}

#[tokio::test]
async fn create_from_nothing_applies_everything_with_ssa() {
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, cluster("{}"), create_from_nothing()).await;
    assert_eq!(result.expect("reconciled"), Action::requeue(RESYNC));
}

/// Scenario: image change on an existing cluster (secrets exist, objects exist).
pub(super) fn image_change() -> Scenario {
    scenario(vec![
        generated_secrets_present(),
        managed_redis_reapplied(),
        services_reapplied(),
        vec![
            ssa_deployment(false, |body| {
                assert_eq!(
                    body["spec"]["template"]["spec"]["containers"][0]["image"],
                    "example.com/push:2"
                );
            }),
            ssa_pdb(false),
        ],
        nothing_else_to_prune(),
        vec![
            status_patch(|body| assert_eq!(body["status"]["observedGeneration"], 2)),
            event("Updated", "Normal"),
        ],
    ])
}

/// Scenario: the operator changed the pods' template (a new default image; the spec is
/// the one last applied) while another cluster's rollout holds the gate: the Deployment
/// is read and left as it is, Progressing says RolloutQueued naming that cluster, and the
/// status keeps the hash of the template the pods run.
pub(super) fn rollout_queued() -> Scenario {
    scenario(vec![
        generated_secrets_present(),
        managed_redis_reapplied(),
        services_reapplied(),
        vec![
            call(Method::GET, &format!("{APPS}/deployments/chat")).reply(
                200,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "chat", "namespace": "ns", "generation": 4},
                    "status": {"observedGeneration": 4, "replicas": 2, "readyReplicas": 2,
                               "updatedReplicas": 2}
                }),
            ),
            ssa_pdb(false),
        ],
        nothing_else_to_prune(),
        vec![status_patch(|body| {
            let progressing = condition(body, "Progressing");
            assert_eq!(progressing["status"], "True");
            assert_eq!(progressing["reason"], "RolloutQueued");
            let message = progressing["message"].as_str().unwrap_or_default();
            assert!(message.contains("other/fleet is rolling out"), "{message}");
            assert_eq!(body["status"]["podTemplateHash"], "applied-before");
            assert_eq!(body["status"]["observedGeneration"], 1);
        })],
    ])
}

#[tokio::test]
async fn an_operator_caused_rollout_waits_while_another_cluster_rolls() {
    let (client, handle) = crate::fixtures::mock_client();
    let gate = RolloutGate::new(Duration::from_secs(30));
    assert_eq!(
        gate.admit("other/fleet", std::time::Instant::now()),
        Admission::Go
    );
    let ctx =
        Context::new(client, None, Arc::new(Metrics::default()), None).with_rollout_gate(gate);
    let mut pc = cluster("{}").generation(1).observed(1);
    if let Some(status) = pc.status.as_mut() {
        status.pod_template_hash = Some("applied-before".into());
    }
    let (result, _) = run(Arc::new(ctx), handle, pc, rollout_queued()).await;
    assert_eq!(result.expect("reconciled"), Action::requeue(QUEUE_POLL));
}

/// Scenario: the pause annotation on a cluster with a new spec: only the `Paused`
/// condition is written (observedGeneration stays behind), an Event the first time.
pub(super) fn paused(first_time: bool) -> Scenario {
    let mut calls = vec![status_patch(|body| {
        let paused = condition(body, "Paused");
        assert_eq!(paused["status"], "True");
        assert_eq!(paused["reason"], "Annotated");
        assert_eq!(body["status"]["observedGeneration"], 1, "nothing applied");
    })];
    if first_time {
        calls.push(event("Paused", "Normal"));
    }
    Scenario(calls)
}

#[tokio::test]
async fn a_paused_cluster_is_left_alone_until_the_annotation_goes() {
    let spec = "{image: 'example.com/push:2'}";
    let (ctx, handle) = context();
    let pc = cluster(spec)
        .generation(2)
        .observed(1)
        .pause_annotation("true");
    let (result, _) = run(ctx, handle, pc.clone(), paused(true)).await;
    assert_eq!(result.expect("not an error"), Action::await_change());

    // Reconciled again while paused (its own status patch): no second Event.
    let mut again = pc;
    again.status = Some(status::paused(
        again.status.as_ref(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    ));
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, again.clone(), paused(false)).await;
    assert_eq!(result.expect("not an error"), Action::await_change());

    // Another value is not a pause; without the annotation the new spec is applied,
    // the Paused condition goes and an Event says so.
    for unpaused in [
        again.clone().pause_annotation("false"),
        cluster(spec).generation(2).observed(1),
    ] {
        let resumed = PushCluster {
            status: again.status.clone(),
            ..unpaused
        };
        let mut calls = image_change().0;
        let updated = calls.pop().expect("the Updated event");
        calls.push(event("Resumed", "Normal"));
        calls.push(updated);
        let (ctx, handle) = context();
        let (result, _) = run(ctx, handle, resumed, Scenario(calls)).await;
        result.expect("reconciled");
    }
}

#[tokio::test]
async fn image_change_reapplies_the_deployment() {
    let (ctx, handle) = context();
    let pc = cluster("{image: 'example.com/push:2'}")
        .generation(2)
        .observed(1);
    let (result, _) = run(ctx, handle, pc, image_change()).await;
    result.expect("reconciled");
}

/// Scenario: managed Redis + gateway → external Redis + ingress: the HTTPRoute and
/// every Redis object go; the generated password Secret too.
pub(super) fn exposure_and_redis_switch(ingress_exists: bool) -> Scenario {
    scenario(vec![
        vec![
            secret_present("chat-api-token", "token"),
            secret_present("redis-auth", "password"),
        ],
        services_reapplied(),
        vec![
            ssa_deployment(false, |body| {
                let env = body["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
                assert!(
                    env.contains("redis://external:6379?protocol=resp3"),
                    "{env}"
                );
            }),
            ssa_pdb(false),
            ssa(NET, "ingresses", "chat", "Ingress", !ingress_exists).check(|body| {
                assert_eq!(
                    body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"],
                    "cookie"
                );
            }),
            owned(NS_API, "services", "chat-redis", "v1", "Service", "uid-1"),
            delete(NS_API, "services", "chat-redis"),
            owned(
                APPS,
                "statefulsets",
                "chat-redis",
                "apps/v1",
                "StatefulSet",
                "uid-1",
            ),
            delete(APPS, "statefulsets", "chat-redis"),
            owned(
                POLICY,
                "poddisruptionbudgets",
                "chat-redis",
                "policy/v1",
                "PodDisruptionBudget",
                "uid-1",
            ),
            delete(POLICY, "poddisruptionbudgets", "chat-redis"),
            owned(
                NET,
                "networkpolicies",
                "chat-redis",
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "uid-1",
            ),
            delete(NET, "networkpolicies", "chat-redis"),
            absent(NS_API, "services", "chat-redis-pods"),
            absent(NS_API, "services", "chat-redis-sentinel"),
            absent(APPS, "statefulsets", "chat-redis-sentinel"),
            absent(POLICY, "poddisruptionbudgets", "chat-redis-sentinel"),
            absent(NET, "networkpolicies", "chat-redis-sentinel"),
            owned(
                NS_API,
                "secrets",
                "chat-redis-password",
                "v1",
                "Secret",
                "uid-1",
            ),
            delete(NS_API, "secrets", "chat-redis-password"),
            owned(
                GATEWAY,
                "httproutes",
                "chat",
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                "uid-1",
            ),
            delete(GATEWAY, "httproutes", "chat"),
            event("Deleted", "Normal").check(|body| {
                let note = body["note"].as_str().unwrap_or_default();
                for gone in [
                    "Service/chat-redis",
                    "StatefulSet/chat-redis",
                    "NetworkPolicy/chat-redis",
                    "Secret/chat-redis-password",
                    "HttpRoute/chat",
                ] {
                    assert!(note.contains(gone), "{gone} not in {note}");
                }
            }),
            status_patch(|body| {
                assert_eq!(condition(body, "RedisReady")["reason"], "External");
                assert_eq!(body["status"]["endpoint"], "http://push.example.com");
            }),
            event("Updated", "Normal"),
        ],
    ])
}

#[tokio::test]
async fn exposure_mode_switch_removes_the_old_objects() {
    let (ctx, handle) = context();
    let pc = cluster(
        "{redis: {external: {url: 'redis://external:6379', passwordSecretRef: {name: redis-auth, key: password}}}, exposure: {host: push.example.com, ingress: {className: nginx}}}",
    )
    .generation(3)
    .observed(2);
    let (result, _) = run(ctx, handle, pc, exposure_and_redis_switch(false)).await;
    result.expect("reconciled");
}

/// Scenario: a referenced JWT Secret is missing → Degraded condition, nothing applied.
pub(super) fn missing_secret() -> Scenario {
    scenario(vec![
        generated_secrets_present(),
        vec![
            secret_absent("jwt-key"),
            status_patch(|body| {
                let degraded = condition(body, "Degraded");
                assert_eq!(
                    (degraded["status"].as_str(), degraded["reason"].as_str()),
                    (Some("True"), Some("SecretMissing"))
                );
                assert!(
                    degraded["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("jwt-key/secret")),
                    "{degraded}"
                );
                assert_eq!(condition(body, "Ready")["status"], "False");
            }),
            event("SecretMissing", "Warning"),
        ],
    ])
}

#[tokio::test]
async fn missing_secret_sets_a_condition_and_retries_later() {
    let (ctx, handle) = context();
    let pc = cluster("{auth: {jwt: {secretRef: {name: jwt-key, key: secret}}}}");
    let (result, _) = run(ctx, handle, pc, missing_secret()).await;
    assert_eq!(
        result.expect("not an error"),
        Action::requeue(MISSING_DEPENDENCY_RETRY)
    );
}

/// Scenario: the API server fails the Deployment apply.
pub(super) fn api_error(first: bool) -> Scenario {
    let failed_event = if first {
        event("ApplyFailed", "Warning")
    } else {
        // The Recorder turns a repeat into a series: a patch of the first event.
        call(Method::PATCH, &format!("{EVENTS}/chat."))
            .path_prefix()
            .query("")
            .check(|body| assert_eq!(body["series"]["count"], 2))
            .echo(200)
    };
    scenario(vec![
        vec![
            secret_present("chat-api-token", "token"),
            call(Method::GET, "/apis/gateway.networking.k8s.io/v1").reply(
                200,
                json!({"kind": "APIResourceList", "groupVersion": "gateway.networking.k8s.io/v1",
                       "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true,
                                      "kind": "HTTPRoute", "verbs": ["get", "patch"]}]}),
            ),
        ],
        services_reapplied(),
        vec![
            ssa(APPS, "deployments", "chat", "Deployment", false).reply(
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: request timed out",
                       "reason": "InternalError", "code": 500}),
            ),
            failed_event,
            // Said in the status: the spec is not applied, the cluster not Ready.
            status_patch(|body| {
                let degraded = condition(body, "Degraded");
                assert_eq!(
                    (&degraded["status"], &degraded["reason"]),
                    (&json!("True"), &json!("ApplyFailed"))
                );
                assert!(
                    degraded["message"].as_str().is_some_and(|m| m
                        .starts_with("step apply failed: applying Deployment")
                        && m.contains("etcdserver: request timed out")),
                    "the step, the object and the API server's answer: {degraded}"
                );
                assert_eq!(condition(body, "Ready")["status"], "False");
                assert_ne!(
                    body["status"]["observedGeneration"], degraded["observedGeneration"],
                    "this generation was not applied in full: {}",
                    body["status"]
                );
            }),
        ],
    ])
}

/// Scenario: persistence turned on. The stored StatefulSet has no claim templates and the
/// API server refuses to add them in place: deleted with its pods orphaned, waited for,
/// created again; everything after it still applied.
pub(super) fn persistence_turned_on() -> Scenario {
    scenario(vec![
        generated_secrets_present(),
        vec![
            ssa(NS_API, "services", "chat-redis", "Service", false),
            redis_statefulset_stored(json!(null)),
            event("Recreated", "Normal").check(|body| {
                assert!(
                    body["note"]
                        .as_str()
                        .is_some_and(|n| n.contains("volume claim templates")),
                    "{body}"
                );
            }),
            call(Method::DELETE, &format!("{APPS}/statefulsets/chat-redis"))
                .query("")
                .check(|body| {
                    assert_eq!(body["propagationPolicy"], "Orphan", "the pods keep running");
                    assert_eq!(body["preconditions"]["uid"], "chat-redis-uid");
                })
                .reply(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
            // Still there while the garbage collector orphans the pods, then gone.
            redis_statefulset_stored(json!(null)),
            absent(APPS, "statefulsets", "chat-redis"),
            // Created again; it adopted the running pod, which has no volume for the
            // claim template (its controller cannot add one in place).
            call(Method::PATCH, &format!("{APPS}/statefulsets/chat-redis"))
                .query(SSA_QUERY)
                .reply(201, json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": "chat-redis", "namespace": "ns", "generation": 1},
                    "spec": {"replicas": 1, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
                    "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                               "updatedReplicas": 0, "currentRevision": "a", "updateRevision": "b"}})),
            call(Method::GET, &format!("{NS_API}/pods"))
                .query("&labelSelector=app.kubernetes.io%2Fcomponent%3Dredis%2Capp.kubernetes.io%2Finstance%3Dchat%2Capp.kubernetes.io%2Fname%3Dpushcluster")
                .reply(200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                    "metadata": {"name": "chat-redis-0", "namespace": "ns"},
                    "spec": {"containers": [], "volumes": [{"name": "data", "emptyDir": {}}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]})),
            call(Method::POST, &format!("{NS_API}/pods/chat-redis-0/eviction"))
                .query("")
                // kube's body: no kind (the endpoint's, policy/v1 Eviction), default options.
                .check(|body| assert_eq!(body["metadata"]["name"], "chat-redis-0"))
                .reply(201, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            event("Evicted", "Normal").check(|body| {
                assert!(body["note"].as_str().is_some_and(|n| n.contains("chat-redis-0")), "{body}");
            }),
            ssa(
                POLICY,
                "poddisruptionbudgets",
                "chat-redis",
                "PodDisruptionBudget",
                false,
            ),
            ssa(NET, "networkpolicies", "chat-redis", "NetworkPolicy", false),
        ],
        services_reapplied(),
        vec![ssa_deployment(false, |_| {}), ssa_pdb(false)],
        nothing_else_to_prune(),
        vec![
            status_patch(|body| {
                assert_eq!(body["status"]["observedGeneration"], 2);
                assert_eq!(condition(body, "Degraded")["status"], "False");
                let progressing = condition(body, "Progressing");
                assert_eq!(progressing["reason"], "RollingOut", "{body}");
                assert!(progressing["message"].as_str().is_some_and(|m| m.contains("chat-redis-0")), "{body}");
            }),
            event("Updated", "Normal"),
        ],
    ])
}

#[tokio::test]
async fn persistence_turned_on_recreates_the_redis_statefulset_and_evicts_the_pod_without_its_claim()
 {
    let (ctx, handle) = context();
    let pc = cluster("{redis: {managed: {persistence: {size: 1Gi}}}}")
        .generation(2)
        .observed(1);
    let (result, _) = run(ctx, handle, pc, persistence_turned_on()).await;
    // Looked at again soon: the pod comes back with its claim, then Progressing ends.
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(crate::controller::plan::REDIS_VOLUME_RESYNC)
    );
}

#[tokio::test]
async fn unchanged_claim_templates_are_applied_in_place() {
    let (ctx, handle) = context();
    let pc = cluster("{redis: {managed: {persistence: {size: 1Gi}}}}")
        .generation(2)
        .observed(1);
    let claims = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "1Gi"}}}}]);
    let mut scenario = image_change();
    // The image_change scenario with the persistent StatefulSet stored: no delete.
    scenario.0[3] = redis_statefulset_stored(claims);
    scenario.0[10] = ssa_deployment(false, |_| {});
    let (result, _) = run(ctx, handle, pc, scenario).await;
    result.expect("reconciled");
}

#[tokio::test]
async fn api_error_is_requeued_with_backoff() {
    let (ctx, handle) = context();
    let pc = cluster(
        "{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}",
    );
    let (result, _, verifier) = run_keeping(
        ctx.clone(),
        ApiServerVerifier(handle),
        pc.clone(),
        api_error(true),
    )
    .await;
    let error = result.expect_err("apply failed");
    assert_eq!(error.step(), "apply");
    assert_eq!(
        error_policy(Arc::new(pc.clone()), &error, ctx.clone()),
        Action::requeue(backoff(1))
    );

    // Second attempt on the same controller: same failure, longer wait; the Event becomes a series.
    let (result, _, _) = run_keeping(ctx.clone(), verifier, pc.clone(), api_error(false)).await;
    let error = result.expect_err("apply failed again");
    assert_eq!(
        error_policy(Arc::new(pc), &error, ctx.clone()),
        Action::requeue(backoff(2))
    );
    assert!(backoff(2) > backoff(1));
    assert!(
        ctx.metrics
            .encode()
            .contains("reconcile_failures_total{step=\"apply\"} 2")
    );
}

/// The real API server's answer to a create in a namespace being deleted
/// (`e2e/cluster/test_api_server.py` checks this shape on the real server).
pub(super) fn namespace_terminating(resource: &str, name: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{resource} \"{name}\" is forbidden: unable to create new content in namespace ns because it is being terminated"),
           "reason": "Forbidden",
           "details": {"name": name, "kind": resource,
                       "causes": [{"reason": "NamespaceTerminating",
                                   "message": "namespace ns is being terminated",
                                   "field": "metadata.namespace"}]},
           "code": 403})
}

#[tokio::test]
async fn a_namespace_being_deleted_is_no_failure() {
    let (ctx, handle) = context();
    let pc = cluster("{}");
    // The namespace controller deleted the generated Secret before the PushCluster.
    let scenario = Scenario(vec![
        secret_absent("chat-api-token"),
        call(Method::POST, &format!("{NS_API}/secrets"))
            .query("&fieldManager=pushcluster-operator")
            .reply(403, namespace_terminating("secrets", "chat-api-token")),
    ]);
    let (result, seen, _) =
        run_keeping(ctx.clone(), ApiServerVerifier(handle), pc.clone(), scenario).await;
    assert_eq!(
        seen.len(),
        2,
        "no status written, no Event: {:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let error = result.expect_err("the create was refused");
    assert!(error.namespace_terminating(), "{error}");
    assert_eq!(
        error_policy(Arc::new(pc), &error, ctx.clone()),
        Action::await_change(),
        "not retried: the PushCluster's deletion follows"
    );
    assert!(
        !ctx.metrics.encode().contains("reconcile_failures_total{"),
        "not counted as a failure: {}",
        ctx.metrics.encode()
    );

    // Any other 403 (e.g. RBAC) is a failure as before.
    let mut rbac = namespace_terminating("secrets", "chat-api-token");
    rbac["details"]["causes"] = json!([]);
    let (ctx, handle) = context();
    let scenario = Scenario(vec![
        secret_absent("chat-api-token"),
        call(Method::POST, &format!("{NS_API}/secrets"))
            .query("&fieldManager=pushcluster-operator")
            .reply(403, rbac),
        status_patch(|body| {
            assert_eq!(condition(body, "Degraded")["reason"], "ReconcileFailed");
        }),
        event("ReconcileFailed", "Warning"),
    ]);
    let (result, _) = run(ctx, handle, cluster("{}"), scenario).await;
    assert!(!result.expect_err("refused").namespace_terminating());
}

#[tokio::test]
async fn deleted_cluster_makes_no_calls() {
    let (ctx, handle) = context();
    let (result, seen) = run(ctx, handle, cluster("{}").deleted(), Scenario(vec![])).await;
    assert_eq!(result.expect("ok"), Action::await_change());
    assert!(seen.is_empty());
}

/// Scenario: a spec that slipped past CEL (e.g. written before a rule existed).
pub(super) fn invalid_spec(first_time: bool) -> Scenario {
    let mut calls = vec![status_patch(|body| {
        let degraded = condition(body, "Degraded");
        assert_eq!(degraded["reason"], "InvalidSpec");
        assert!(
            degraded["message"]
                .as_str()
                .is_some_and(|m| m.contains("spec.redis")),
            "{degraded}"
        );
    })];
    if first_time {
        calls.push(event("InvalidSpec", "Warning"));
    }
    Scenario(calls)
}

#[tokio::test]
async fn invalid_spec_is_degraded_and_not_retried() {
    let spec = "{redis: {managed: {}, external: {url: 'redis://r'}}}";
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, cluster(spec), invalid_spec(true)).await;
    assert_eq!(result.expect("not an error"), Action::await_change());

    // Reconciled again unchanged (e.g. after its own status patch): no second Event.
    let mut reported = cluster(spec);
    let observed = status::Observed {
        generation: Some(1),
        blocker: Some(Blocker::InvalidSpec(validate::describe(
            &validate::validate(&reported, "ns").expect_err("invalid"),
        ))),
        ..Default::default()
    };
    reported.status = Some(status::compute(
        &observed,
        None,
        Time(k8s_openapi::jiff::Timestamp::now()),
    ));
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, reported, invalid_spec(false)).await;
    assert_eq!(result.expect("not an error"), Action::await_change());
}

/// Scenario: gateway mode without the Gateway API installed; the old Ingress goes.
pub(super) fn gateway_api_missing() -> Scenario {
    scenario(vec![
        vec![
            secret_present("chat-api-token", "token"),
            call(Method::GET, "/apis/gateway.networking.k8s.io/v1").unserved(),
        ],
        services_reapplied(),
        vec![ssa_deployment(false, |_| {}), ssa_pdb(false)],
        no_managed_redis_left(),
        vec![
            owned(
                NET,
                "ingresses",
                "chat",
                "networking.k8s.io/v1",
                "Ingress",
                "uid-1",
            ),
            delete(NET, "ingresses", "chat"),
            event("Deleted", "Normal"),
            status_patch(|body| {
                let exposure = condition(body, "ExposureReady");
                assert_eq!(
                    (exposure["status"].as_str(), exposure["reason"].as_str()),
                    (Some("False"), Some("GatewayAPIMissing"))
                );
            }),
        ],
    ])
}

#[tokio::test]
async fn missing_gateway_api_is_a_condition_not_a_crash() {
    let (ctx, handle) = context();
    let pc = cluster("{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}").observed(1);
    let (result, _) = run(ctx, handle, pc, gateway_api_missing()).await;
    assert_eq!(
        result.expect("not an error"),
        Action::requeue(MISSING_DEPENDENCY_RETRY)
    );
}

pub(super) fn gateway_cluster() -> PushCluster {
    cluster("{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw, namespace: infra}}}}")
        .generation(2)
        .observed(1)
}

pub(super) fn discovery_with_httproutes() -> Call {
    call(Method::GET, "/apis/gateway.networking.k8s.io/v1").reply(
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "gateway.networking.k8s.io/v1",
               "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true,
                              "kind": "HTTPRoute", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}),
    )
}

/// The HTTPRoute as the API server returns it once `infra/gw`'s controller accepted it.
fn accepted_route(body: &serde_json::Value) -> serde_json::Value {
    let mut route = body.clone();
    route["status"] = json!({"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "infra"},
        "controllerName": "example.net/gateway-controller",
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
             "lastTransitionTime": "2026-12-07T10:00:00Z", "observedGeneration": 1},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
             "lastTransitionTime": "2026-12-07T10:00:00Z", "observedGeneration": 1}]}]});
    route
}

/// Scenario: gateway mode with the Gateway API installed; the route accepted by its
/// Gateway's controller (ExposureReady True) or not yet (False, looked at again soon).
pub(super) fn gateway_applied(route_exists: bool, accepted: bool) -> Scenario {
    let route = ssa(GATEWAY, "httproutes", "chat", "HTTPRoute", !route_exists).check(|body| {
        assert_eq!(body["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(body["spec"]["parentRefs"][0]["namespace"], "infra");
        assert_eq!(
            body["spec"]["rules"][0]["sessionPersistence"]["type"],
            "Cookie"
        );
        assert_eq!(body["spec"]["hostnames"][0], "a.b");
    });
    let route = if accepted {
        route.respond(200, accepted_route)
    } else {
        route
    };
    scenario(vec![
        vec![
            secret_present("chat-api-token", "token"),
            discovery_with_httproutes(),
        ],
        services_reapplied(),
        vec![ssa_deployment(false, |_| {}), ssa_pdb(false), route],
        no_managed_redis_left(),
        vec![
            absent(NET, "ingresses", "chat"),
            status_patch(move |body| {
                let exposure = condition(body, "ExposureReady");
                if accepted {
                    assert_eq!(exposure["status"], "True", "{exposure}");
                    assert!(
                        exposure["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("example.net/gateway-controller")),
                        "{exposure}"
                    );
                } else {
                    assert_eq!(
                        (&exposure["status"], &exposure["reason"]),
                        (&json!("False"), &json!("RouteNotAccepted"))
                    );
                    assert!(
                        exposure["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("Gateway infra/gw")),
                        "{exposure}"
                    );
                    assert_eq!(
                        condition(body, "Ready")["status"],
                        "False",
                        "not ready while nothing routes"
                    );
                }
                assert_eq!(body["status"]["endpoint"], "http://a.b");
            }),
            event("Updated", "Normal"),
        ],
    ])
}

#[tokio::test]
async fn gateway_mode_applies_the_httproute_and_is_ready_once_its_gateway_accepted_it() {
    for (exists, accepted) in [(false, false), (true, false), (true, true)] {
        let (ctx, handle) = context();
        let (result, _) = run(
            ctx,
            handle,
            gateway_cluster(),
            gateway_applied(exists, accepted),
        )
        .await;
        let requeue = if accepted {
            RESYNC
        } else {
            EXPOSURE_PENDING_RESYNC
        };
        assert_eq!(result.expect("reconciled"), Action::requeue(requeue));
    }
}

mod calls;
mod rbac_coverage;
