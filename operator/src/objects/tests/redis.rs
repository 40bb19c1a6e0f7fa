//! The managed Redis as a production review reads it: resources, memory bound, eviction
//! policy, priority, spread, disruption budget, volume retention, password roll.

use super::*;
use crate::objects::redis::{maxmemory, quantity_bytes};
use crate::objects::redis_pod::PASSWORD_DIGEST_ANNOTATION;

fn statefulset_json(spec: &str, digests: &SecretDigests) -> serde_json::Value {
    find(
        &desired_objects(&cluster(spec), digests),
        ObjectKind::StatefulSet,
        "chat-redis",
    )
    .to_json()
    .expect("json")
}

fn args(sts: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(sts["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .expect("args are strings")
}

fn arg_after(sts: &serde_json::Value, flag: &str) -> Option<String> {
    let args = args(sts);
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

#[test]
fn default_redis_is_never_best_effort_and_bounded_with_noeviction() {
    let sts = statefulset_json("{}", &SecretDigests::default());
    let resources = &sts["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["memory"], "256Mi");
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    // 75 % of 256 MiB.
    assert_eq!(arg_after(&sts, "--maxmemory").as_deref(), Some("201326592"));
    assert_eq!(
        arg_after(&sts, "--maxmemory-policy").as_deref(),
        Some("noeviction")
    );
}

#[test]
fn maxmemory_follows_the_users_memory_limit_else_request_else_none() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "{limits: {memory: 1Gi}, requests: {memory: 512Mi}}",
            Some("805306368"),
        ),
        ("{requests: {memory: 2G}}", Some("1500000000")),
        ("{requests: {cpu: 1}}", None),
        ("{limits: {memory: 1.5Gi}}", None),
    ];
    for (resources, want) in cases {
        let sts = statefulset_json(
            &format!("{{redis: {{managed: {{resources: {resources}}}}}}}"),
            &SecretDigests::default(),
        );
        assert_eq!(
            arg_after(&sts, "--maxmemory").as_deref(),
            *want,
            "resources {resources}"
        );
        assert_eq!(
            arg_after(&sts, "--maxmemory-policy").as_deref(),
            Some("noeviction"),
            "resources {resources}"
        );
    }
    assert_eq!(maxmemory(&Default::default()), None);
}

#[test]
fn quantity_bytes_reads_plain_decimal_and_binary_suffixes_and_nothing_else() {
    let cases: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("128974848", Some(128_974_848)),
        ("129M", Some(129_000_000)),
        ("123Mi", Some(123 << 20)),
        ("1Gi", Some(1 << 30)),
        ("2k", Some(2_000)),
        ("16Ei", None),
        ("1e3", None),
        ("1.5Gi", None),
        ("100m", None),
        ("", None),
        ("Gi", None),
        ("-1Gi", None),
    ];
    for (quantity, want) in cases {
        assert_eq!(quantity_bytes(quantity), *want, "{quantity:?}");
    }
}

#[test]
fn priority_spread_and_retention_reach_the_statefulset() {
    let sts = statefulset_json(
        "{redis: {managed: {priorityClassName: redis-critical, persistence: {size: 2Gi, whenDeleted: Delete}}}}",
        &SecretDigests::default(),
    );
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "redis-critical");
    let spread = pod["topologySpreadConstraints"].as_array().expect("spread");
    let keys: Vec<_> = spread.iter().map(|c| c["topologyKey"].clone()).collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    for constraint in spread {
        assert_eq!(constraint["whenUnsatisfiable"], "ScheduleAnyway");
        assert_eq!(
            constraint["labelSelector"]["matchLabels"][names::LABEL_COMPONENT],
            names::COMPONENT_REDIS
        );
    }
    let retention = &sts["spec"]["persistentVolumeClaimRetentionPolicy"];
    assert_eq!(retention["whenDeleted"], "Delete");
    assert_eq!(retention["whenScaled"], "Delete");
    let retained = statefulset_json(
        "{redis: {managed: {persistence: {}}}}",
        &SecretDigests::default(),
    );
    assert_eq!(
        retained["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    let plain = statefulset_json("{}", &SecretDigests::default());
    assert!(plain["spec"]["persistentVolumeClaimRetentionPolicy"].is_null());
    assert!(plain["spec"]["template"]["spec"]["priorityClassName"].is_null());
}

#[test]
fn a_new_password_changes_the_redis_pod_template_and_nothing_else_does() {
    let with = |pods: &str, redis: &str| {
        statefulset_json(
            "{}",
            &SecretDigests {
                pods: pods.to_string(),
                redis: redis.to_string(),
            },
        )["spec"]["template"]
            .clone()
    };
    assert_ne!(
        with("p", "r1"),
        with("p", "r2"),
        "a new password rolls Redis"
    );
    assert_eq!(
        with("p1", "r"),
        with("p2", "r"),
        "an API token or JWT key rotation does not restart Redis"
    );
    assert_eq!(
        with("p", "r1")["metadata"]["annotations"][PASSWORD_DIGEST_ANNOTATION],
        "r1"
    );
}

#[test]
fn a_redis_disruption_budget_takes_one_redis_pod_at_a_time() {
    let objects = desired_objects(&cluster("{}"), &SecretDigests::default());
    let pdb = find(&objects, ObjectKind::PodDisruptionBudget, "chat-redis")
        .to_json()
        .expect("json");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"][names::LABEL_COMPONENT],
        names::COMPONENT_REDIS
    );
    let external = desired_objects(
        &cluster("{redis: {external: {url: 'redis://r:6379'}}}"),
        &SecretDigests::default(),
    );
    assert!(
        !external
            .iter()
            .any(|o| o.kind() == ObjectKind::PodDisruptionBudget && o.name() == "chat-redis")
    );
}
