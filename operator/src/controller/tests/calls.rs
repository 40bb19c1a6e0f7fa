//! Expected API calls for the controller scenarios (method, path, query and
//! body checks as a real API server would see them) and the scenario runner.

use crate::controller::*;
// What every controller test file needs, in one place (they glob this module).
pub(in crate::controller) use crate::controller::plan::{
    EXPOSURE_PENDING_RESYNC, MISSING_DEPENDENCY_RETRY, RESYNC,
};
pub(in crate::controller) use crate::controller::status::Blocker;
use crate::fixtures::*;
pub(in crate::controller) use crate::metrics::Metrics;
pub(in crate::controller) use crate::resources::PushCluster;
pub(in crate::controller) use crate::validate;
use http::Method;
pub(in crate::controller) use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
pub(in crate::controller) use kube::runtime::controller::Action;
use serde_json::{Value, json};
pub(in crate::controller) use std::sync::Arc;

pub(super) const NS_API: &str = "/api/v1/namespaces/ns";
pub(super) const APPS: &str = "/apis/apps/v1/namespaces/ns";
pub(super) const NET: &str = "/apis/networking.k8s.io/v1/namespaces/ns";
pub(super) const POLICY: &str = "/apis/policy/v1/namespaces/ns";
pub(super) const GATEWAY: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/ns";
pub(super) const STATUS: &str =
    "/apis/pushcluster.dev/v1alpha1/namespaces/ns/pushclusters/chat/status";
pub(super) const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
/// Exactly what kube's client sends (the leading `&` is its quirk; the API server ignores it).
pub(super) const SSA_QUERY: &str = "&force=true&fieldManager=pushcluster-operator";

pub(super) fn context() -> (Arc<Context>, crate::fixtures::ApiServerHandle) {
    let (client, handle) = mock_client();
    let ctx = Context::new(
        client,
        Some("operator-0".into()),
        Arc::new(Metrics::default()),
        None,
    );
    (Arc::new(ctx), handle)
}

/// Builds a scenario from runs of calls, in order.
pub(super) fn scenario(runs: Vec<Vec<Call>>) -> Scenario {
    Scenario(runs.into_iter().flatten().collect())
}

/// The generated Secrets of a cluster with managed Redis, already there.
pub(super) fn generated_secrets_present() -> Vec<Call> {
    vec![
        secret_present("chat-api-token", "token"),
        secret_present("chat-redis-password", "password"),
    ]
}

/// The managed Redis's Service, StatefulSet (read first: are its immutable fields
/// changing?), PodDisruptionBudget and NetworkPolicy applied; `created` = none existed.
pub(super) fn managed_redis_applied(created: bool) -> Vec<Call> {
    vec![
        ssa(NS_API, "services", "chat-redis", "Service", created),
        if created {
            absent(APPS, "statefulsets", "chat-redis")
        } else {
            redis_statefulset_stored(json!(null))
        },
        ssa_redis_statefulset(created),
        ssa(
            POLICY,
            "poddisruptionbudgets",
            "chat-redis",
            "PodDisruptionBudget",
            created,
        ),
        ssa(
            NET,
            "networkpolicies",
            "chat-redis",
            "NetworkPolicy",
            created,
        ),
    ]
}

/// The managed Redis applied over existing objects.
pub(super) fn managed_redis_reapplied() -> Vec<Call> {
    managed_redis_applied(false)
}

/// GET of the stored Redis StatefulSet, with these volume claim templates.
pub(super) fn redis_statefulset_stored(claims: Value) -> Call {
    call(Method::GET, &format!("{APPS}/statefulsets/chat-redis")).reply(
        200,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "chat-redis", "namespace": "ns", "uid": "chat-redis-uid"},
               "spec": {"serviceName": "chat-redis", "volumeClaimTemplates": claims}}),
    )
}

/// The client, server API and headless Services applied over existing ones.
pub(super) fn services_reapplied() -> Vec<Call> {
    vec![
        ssa(NS_API, "services", "chat", "Service", false),
        ssa(NS_API, "services", "chat-api", "Service", false),
        ssa(NS_API, "services", "chat-headless", "Service", false),
    ]
}

/// The PodDisruptionBudget apply.
pub(super) fn ssa_pdb(created: bool) -> Call {
    ssa(
        POLICY,
        "poddisruptionbudgets",
        "chat",
        "PodDisruptionBudget",
        created,
    )
}

/// A Redis without replicas: none of the replicated topology's objects is there to remove.
pub(super) fn no_replication_left() -> Vec<Call> {
    vec![
        absent(NS_API, "services", "chat-redis-pods"),
        absent(NS_API, "services", "chat-redis-sentinel"),
        absent(APPS, "statefulsets", "chat-redis-sentinel"),
        absent(POLICY, "poddisruptionbudgets", "chat-redis-sentinel"),
        absent(NET, "networkpolicies", "chat-redis-sentinel"),
    ]
}

/// The prune of a single managed Redis behind a Service: no Sentinel objects, no
/// Ingress, no HTTPRoute are there to remove.
pub(super) fn nothing_else_to_prune() -> Vec<Call> {
    let mut calls = no_replication_left();
    calls.extend([
        absent(NET, "ingresses", "chat"),
        absent(GATEWAY, "httproutes", "chat"),
    ]);
    calls
}

/// External Redis: none of the managed Redis's objects is there to remove.
pub(super) fn no_managed_redis_left() -> Vec<Call> {
    vec![
        absent(NS_API, "services", "chat-redis"),
        absent(APPS, "statefulsets", "chat-redis"),
        absent(POLICY, "poddisruptionbudgets", "chat-redis"),
        absent(NET, "networkpolicies", "chat-redis"),
    ]
    .into_iter()
    .chain(no_replication_left())
    .chain([absent(NS_API, "secrets", "chat-redis-password")])
    .collect()
}

/// Server-side apply of `kind`/`name` under `base`; `created` = the object did not exist (201).
pub(super) fn ssa(
    base: &str,
    resource: &str,
    name: &str,
    kind: &'static str,
    created: bool,
) -> Call {
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
pub(super) fn ssa_deployment(created: bool, check: impl Fn(&Value) + Send + 'static) -> Call {
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

pub(super) fn ssa_redis_statefulset(created: bool) -> Call {
    let base = ssa(APPS, "statefulsets", "chat-redis", "StatefulSet", created);
    Call {
        response: Some(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "chat-redis", "namespace": "ns"}, "status": {"readyReplicas": 1}})),
        ..base
    }
}

pub(super) fn event(reason: &'static str, type_: &'static str) -> Call {
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

pub(super) fn secret_absent(name: &str) -> Call {
    call(Method::GET, &format!("{NS_API}/secrets/{name}")).reply(404, not_found(name))
}

pub(super) fn secret_present(name: &str, key: &str) -> Call {
    call(Method::GET, &format!("{NS_API}/secrets/{name}")).reply(
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"},
               "data": {key: "c2VjcmV0"}}),
    )
}

pub(super) fn secret_create(name: &'static str, key: &'static str) -> Call {
    call(Method::POST, &format!("{NS_API}/secrets"))
        .query("&fieldManager=pushcluster-operator")
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

/// A GET of a kind whose API the server does not serve (the Gateway API CRDs are not
/// installed): the real server answers plain text, not a `Status`.
pub(super) fn unserved(base: &str, resource: &str, name: &str) -> Call {
    call(Method::GET, &format!("{base}/{resource}/{name}")).unserved()
}

pub(super) fn absent(base: &str, resource: &str, name: &str) -> Call {
    call(Method::GET, &format!("{base}/{resource}/{name}")).reply(404, not_found(name))
}

pub(super) fn owned(
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

pub(super) fn delete(base: &str, resource: &str, name: &str) -> Call {
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

pub(super) fn status_patch(check: impl Fn(&Value) + Send + 'static) -> Call {
    // The API server answers with the whole object.
    call(Method::PATCH, STATUS)
        .query("&fieldManager=pushcluster-operator")
        .check(check)
        .reply(
            200,
            json!({"apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
               "metadata": {"name": "chat", "namespace": "ns", "uid": "uid-1"}, "spec": {}}),
        )
}

pub(super) fn condition<'a>(body: &'a Value, type_: &str) -> &'a Value {
    body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {body}"))
}

/// Run one reconcile against the scenario; returns its result and the calls seen.
pub(super) async fn run(
    ctx: Arc<Context>,
    handle: crate::fixtures::ApiServerHandle,
    pc: PushCluster,
    scenario: Scenario,
) -> (Result<Action, ReconcileError>, Vec<Seen>) {
    let (result, seen, _) = run_keeping(ctx, ApiServerVerifier(handle), pc, scenario).await;
    (result, seen)
}

pub(super) async fn run_keeping(
    ctx: Arc<Context>,
    verifier: ApiServerVerifier,
    pc: PushCluster,
    scenario: Scenario,
) -> (Result<Action, ReconcileError>, Vec<Seen>, ApiServerVerifier) {
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
