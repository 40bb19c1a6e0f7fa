//! The controller against a mock API server: every request's method, path,
//! query and body as a real API server would see them, in order.

use super::*;
use crate::fixtures::{
    ApiServerVerifier, Call, PushClusterExt, Scenario, Seen, call, cluster, mock_client, not_found,
};
use http::Method;
use serde_json::{Value, json};

const NS_API: &str = "/api/v1/namespaces/ns";
const APPS: &str = "/apis/apps/v1/namespaces/ns";
const NET: &str = "/apis/networking.k8s.io/v1/namespaces/ns";
const POLICY: &str = "/apis/policy/v1/namespaces/ns";
const GATEWAY: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/ns";
const STATUS: &str = "/apis/pushcluster.dev/v1alpha1/namespaces/ns/pushclusters/chat/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
/// Exactly what kube's client sends (the leading `&` is its quirk; the API server ignores it).
const SSA_QUERY: &str = "&force=true&fieldManager=pushcluster-operator";

fn context() -> (Arc<Context>, crate::fixtures::ApiServerHandle) {
    let (client, handle) = mock_client();
    let ctx = Context::new(
        client,
        Some("operator-0".into()),
        Arc::new(Metrics::default()),
        None,
    );
    (Arc::new(ctx), handle)
}

/// Server-side apply of `kind`/`name` under `base`; `created` = the object did not exist (201).
fn ssa(base: &str, resource: &str, name: &str, kind: &'static str, created: bool) -> Call {
    let expected_name = name.to_string();
    call(Method::PATCH, &format!("{base}/{resource}/{name}"))
        .query(SSA_QUERY)
        .check(move |body| {
            assert_eq!(body["kind"], kind);
            assert_eq!(body["metadata"]["name"], expected_name.as_str());
            assert_eq!(body["metadata"]["namespace"], "ns");
            let owner = &body["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["uid"].as_str(), owner["controller"].as_bool()),
                (Some("uid-1"), Some(true))
            );
            assert_eq!(owner["kind"], "PushCluster");
            assert!(body.get("status").is_none(), "no status in an apply body");
        })
        .echo(if created { 201 } else { 200 })
}

/// The Deployment apply; the response carries a rolled-out status.
fn ssa_deployment(created: bool, check: impl Fn(&Value) + Send + 'static) -> Call {
    let base = ssa(APPS, "deployments", "chat", "Deployment", created);
    let owner_check = base.check;
    Call {
        check: Box::new(move |body| {
            owner_check(body);
            check(body);
        }),
        response: Some(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "ns", "generation": 1},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
        })),
        ..base
    }
}

fn ssa_redis_statefulset(created: bool) -> Call {
    let base = ssa(APPS, "statefulsets", "chat-redis", "StatefulSet", created);
    Call {
        response: Some(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "chat-redis", "namespace": "ns"}, "status": {"readyReplicas": 1}})),
        ..base
    }
}

fn event(reason: &'static str, type_: &'static str) -> Call {
    call(Method::POST, EVENTS)
        .query("")
        .check(move |body| {
            assert_eq!(body["reason"], reason);
            assert_eq!(body["type"], type_);
            assert_eq!(body["regarding"]["name"], "chat");
            assert_eq!(body["regarding"]["kind"], "PushCluster");
            assert_eq!(body["regarding"]["uid"], "uid-1");
            assert_eq!(body["reportingController"], "pushcluster-operator");
            assert_eq!(body["reportingInstance"], "operator-0");
        })
        .echo(201)
}

fn secret_absent(name: &str) -> Call {
    call(Method::GET, &format!("{NS_API}/secrets/{name}")).reply(404, not_found(name))
}

fn secret_present(name: &str, key: &str) -> Call {
    call(Method::GET, &format!("{NS_API}/secrets/{name}")).reply(
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"},
               "data": {key: "c2VjcmV0"}}),
    )
}

fn secret_create(name: &'static str, key: &'static str) -> Call {
    call(Method::POST, &format!("{NS_API}/secrets"))
        .query("")
        .check(move |body| {
            assert_eq!(body["metadata"]["name"], name);
            assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(
                body["stringData"][key].as_str().map(str::len),
                Some(64),
                "random value"
            );
        })
        .echo(201)
}

fn absent(base: &str, resource: &str, name: &str) -> Call {
    call(Method::GET, &format!("{base}/{resource}/{name}")).reply(404, not_found(name))
}

fn owned(
    base: &str,
    resource: &str,
    name: &str,
    api_version: &str,
    kind: &str,
    owner_uid: &str,
) -> Call {
    call(Method::GET, &format!("{base}/{resource}/{name}")).reply(
        200,
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid"),
                            "ownerReferences": [{"apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
                                                 "name": "chat", "uid": owner_uid, "controller": true}]}}),
    )
}

fn delete(base: &str, resource: &str, name: &str) -> Call {
    let uid = format!("{name}-uid");
    call(Method::DELETE, &format!("{base}/{resource}/{name}"))
        .query("")
        .check(move |body| {
            assert_eq!(
                body["preconditions"]["uid"],
                uid.as_str(),
                "delete only what was read"
            );
            assert_eq!(body["propagationPolicy"], "Background");
        })
        .reply(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
}

fn status_patch(check: impl Fn(&Value) + Send + 'static) -> Call {
    // The API server answers with the whole object.
    call(Method::PATCH, STATUS).query("").check(check).reply(
        200,
        json!({"apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
               "metadata": {"name": "chat", "namespace": "ns", "uid": "uid-1"}, "spec": {}}),
    )
}

fn condition<'a>(body: &'a Value, type_: &str) -> &'a Value {
    body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {body}"))
}

/// Run one reconcile against the scenario; returns its result and the calls seen.
async fn run(
    ctx: Arc<Context>,
    handle: crate::fixtures::ApiServerHandle,
    pc: PushCluster,
    scenario: Scenario,
) -> (Result<Action>, Vec<Seen>) {
    let (result, seen, _) = run_keeping(ctx, ApiServerVerifier(handle), pc, scenario).await;
    (result, seen)
}

async fn run_keeping(
    ctx: Arc<Context>,
    verifier: ApiServerVerifier,
    pc: PushCluster,
    scenario: Scenario,
) -> (Result<Action>, Vec<Seen>, ApiServerVerifier) {
    let verifier = tokio::spawn(verifier.run(scenario));
    let result = tokio::time::timeout(
        crate::fixtures::SCENARIO_TIMEOUT,
        reconcile(Arc::new(pc), ctx),
    )
    .await
    .expect("reconcile finished (an unexpected call would hang it)");
    let (seen, verifier) = verifier.await.expect("verifier finished");
    (result, seen, verifier)
}

/// Scenario: create from nothing (managed Redis, service exposure).
fn create_from_nothing() -> Scenario {
    Scenario(vec![
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
        ssa(NS_API, "services", "chat-redis", "Service", true),
        ssa_redis_statefulset(true),
        ssa(NET, "networkpolicies", "chat-redis", "NetworkPolicy", true),
        ssa(NS_API, "services", "chat", "Service", true).check(|body| {
            assert_eq!(body["spec"]["sessionAffinity"], "ClientIP");
        }),
        ssa(NS_API, "services", "chat-headless", "Service", true),
        ssa_deployment(true, |body| {
            assert_eq!(body["spec"]["replicas"], 2);
        }),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat",
            "PodDisruptionBudget",
            true,
        ),
        // An Ingress of the same name owned by something else is left alone.
        owned(
            NET,
            "ingresses",
            "chat",
            "networking.k8s.io/v1",
            "Ingress",
            "someone-else",
        ),
        absent(GATEWAY, "httproutes", "chat"),
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
}

#[tokio::test]
async fn create_from_nothing_applies_everything_with_ssa() {
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, cluster("{}"), create_from_nothing()).await;
    assert_eq!(result.expect("reconciled"), Action::requeue(RESYNC));
}

/// Scenario: image change on an existing cluster (secrets exist, objects exist).
fn image_change() -> Scenario {
    Scenario(vec![
        secret_present("chat-api-token", "token"),
        secret_present("chat-redis-password", "password"),
        ssa(NS_API, "services", "chat-redis", "Service", false),
        ssa_redis_statefulset(false),
        ssa(NET, "networkpolicies", "chat-redis", "NetworkPolicy", false),
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
        ssa_deployment(false, |body| {
            assert_eq!(
                body["spec"]["template"]["spec"]["containers"][0]["image"],
                "example.com/push:2"
            );
        }),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat",
            "PodDisruptionBudget",
            false,
        ),
        absent(NET, "ingresses", "chat"),
        absent(GATEWAY, "httproutes", "chat"),
        status_patch(|body| assert_eq!(body["status"]["observedGeneration"], 2)),
        event("Updated", "Normal"),
    ])
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
fn exposure_and_redis_switch(ingress_exists: bool) -> Scenario {
    Scenario(vec![
        secret_present("chat-api-token", "token"),
        secret_present("redis-auth", "password"),
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
        ssa_deployment(false, |body| {
            let env = body["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
            assert!(
                env.contains("redis://external:6379?protocol=resp3"),
                "{env}"
            );
        }),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat",
            "PodDisruptionBudget",
            false,
        ),
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
            NET,
            "networkpolicies",
            "chat-redis",
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "uid-1",
        ),
        delete(NET, "networkpolicies", "chat-redis"),
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
fn missing_secret() -> Scenario {
    Scenario(vec![
        secret_present("chat-api-token", "token"),
        secret_present("chat-redis-password", "password"),
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
fn api_error(first: bool) -> Scenario {
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
    let mut calls = vec![
        secret_present("chat-api-token", "token"),
        call(Method::GET, "/apis/gateway.networking.k8s.io/v1").reply(
            200,
            json!({"kind": "APIResourceList", "groupVersion": "gateway.networking.k8s.io/v1",
                   "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true,
                                  "kind": "HTTPRoute", "verbs": ["get", "patch"]}]}),
        ),
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
        ssa(APPS, "deployments", "chat", "Deployment", false).reply(
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: request timed out",
                   "reason": "InternalError", "code": 500}),
        ),
    ];
    calls.push(failed_event);
    Scenario(calls)
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
    assert_eq!(error.metric_label(), "kube");
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
            .contains("reconcile_failures_total{error=\"kube\"} 2")
    );
}

#[tokio::test]
async fn deleted_cluster_makes_no_calls() {
    let (ctx, handle) = context();
    let (result, seen) = run(ctx, handle, cluster("{}").deleted(), Scenario(vec![])).await;
    assert_eq!(result.expect("ok"), Action::await_change());
    assert!(seen.is_empty());
}

/// Scenario: a spec that slipped past CEL (e.g. written before a rule existed).
fn invalid_spec(first_time: bool) -> Scenario {
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
    reported.status = Some(status::compute(&observed, None, now()));
    let (ctx, handle) = context();
    let (result, _) = run(ctx, handle, reported, invalid_spec(false)).await;
    assert_eq!(result.expect("not an error"), Action::await_change());
}

/// Scenario: gateway mode without the Gateway API installed; the old Ingress goes.
fn gateway_api_missing() -> Scenario {
    Scenario(vec![
        secret_present("chat-api-token", "token"),
        call(Method::GET, "/apis/gateway.networking.k8s.io/v1")
            .reply(404, not_found("gateway.networking.k8s.io/v1")),
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
        ssa_deployment(false, |_| {}),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat",
            "PodDisruptionBudget",
            false,
        ),
        absent(NS_API, "services", "chat-redis"),
        absent(APPS, "statefulsets", "chat-redis"),
        absent(NET, "networkpolicies", "chat-redis"),
        absent(NS_API, "secrets", "chat-redis-password"),
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

fn gateway_cluster() -> PushCluster {
    cluster("{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw, namespace: infra}}}}")
        .generation(2)
        .observed(1)
}

fn discovery_with_httproutes() -> Call {
    call(Method::GET, "/apis/gateway.networking.k8s.io/v1").reply(
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "gateway.networking.k8s.io/v1",
               "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true,
                              "kind": "HTTPRoute", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}),
    )
}

/// Scenario: gateway mode with the Gateway API installed.
fn gateway_applied(route_exists: bool) -> Scenario {
    Scenario(vec![
        secret_present("chat-api-token", "token"),
        discovery_with_httproutes(),
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
        ssa_deployment(false, |_| {}),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat",
            "PodDisruptionBudget",
            false,
        ),
        ssa(GATEWAY, "httproutes", "chat", "HTTPRoute", !route_exists).check(|body| {
            assert_eq!(body["apiVersion"], "gateway.networking.k8s.io/v1");
            assert_eq!(body["spec"]["parentRefs"][0]["namespace"], "infra");
            assert_eq!(
                body["spec"]["rules"][0]["sessionPersistence"]["type"],
                "Cookie"
            );
            assert_eq!(body["spec"]["hostnames"][0], "a.b");
        }),
        absent(NS_API, "services", "chat-redis"),
        absent(APPS, "statefulsets", "chat-redis"),
        absent(NET, "networkpolicies", "chat-redis"),
        absent(NS_API, "secrets", "chat-redis-password"),
        absent(NET, "ingresses", "chat"),
        status_patch(|body| {
            assert_eq!(condition(body, "ExposureReady")["status"], "True");
            assert_eq!(body["status"]["endpoint"], "http://a.b");
        }),
        event("Updated", "Normal"),
    ])
}

#[tokio::test]
async fn gateway_mode_applies_the_httproute() {
    for exists in [false, true] {
        let (ctx, handle) = context();
        let (result, _) = run(ctx, handle, gateway_cluster(), gateway_applied(exists)).await;
        assert_eq!(result.expect("reconciled"), Action::requeue(RESYNC));
    }
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
        (gateway_cluster(), gateway_applied(false)),
        (gateway_cluster(), gateway_applied(true)),
        (cluster("{auth: {jwt: {secretRef: {name: jwt-key, key: secret}}}}"), missing_secret()),
        (
            cluster("{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}").observed(1),
            gateway_api_missing(),
        ),
        (cluster("{redis: {managed: {}, external: {url: 'redis://r'}}}"), invalid_spec(true)),
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
