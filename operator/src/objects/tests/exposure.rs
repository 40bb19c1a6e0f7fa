//! Table tests of the exposure, Redis, secret and pruning builders.

use super::*;

use push_contract::kube as names;

#[test]
fn exposure_affinity_per_mode() {
    // (case, spec, object kind, JSON pointer, expected value)
    let cases: &[ExposureCase] = &[
        (
            "service clientip",
            "{}",
            ObjectKind::Service,
            "/spec/sessionAffinity",
            "ClientIP",
        ),
        (
            "service lb type",
            "{exposure: {service: {serviceType: LoadBalancer}}}",
            ObjectKind::Service,
            "/spec/type",
            "LoadBalancer",
        ),
        (
            "nginx cookie",
            "{exposure: {host: a.b, ingress: {className: nginx}}}",
            ObjectKind::Ingress,
            "/metadata/annotations/nginx.ingress.kubernetes.io~1affinity",
            "cookie",
        ),
        (
            "nginx persistent",
            "{exposure: {host: a.b, ingress: {className: nginx}}}",
            ObjectKind::Ingress,
            "/metadata/annotations/nginx.ingress.kubernetes.io~1affinity-mode",
            "persistent",
        ),
        (
            "nginx cookie name",
            "{exposure: {host: a.b, ingress: {className: nginx, cookieName: c1}}}",
            ObjectKind::Ingress,
            "/metadata/annotations/nginx.ingress.kubernetes.io~1session-cookie-name",
            "c1",
        ),
        (
            "nginx ws timeout",
            "{exposure: {host: a.b, ingress: {className: nginx}}}",
            ObjectKind::Ingress,
            "/metadata/annotations/nginx.ingress.kubernetes.io~1proxy-read-timeout",
            "3600",
        ),
        (
            "nginx ip hash",
            "{exposure: {host: a.b, ingress: {className: nginx, affinity: ipHash}}}",
            ObjectKind::Ingress,
            "/metadata/annotations/nginx.ingress.kubernetes.io~1upstream-hash-by",
            "$binary_remote_addr",
        ),
        (
            "ingress class",
            "{exposure: {host: a.b, ingress: {className: internal}}}",
            ObjectKind::Ingress,
            "/spec/ingressClassName",
            "internal",
        ),
        (
            "ingress tls",
            "{exposure: {host: a.b, tls: {secretName: cert}, ingress: {className: nginx}}}",
            ObjectKind::Ingress,
            "/spec/tls/0/secretName",
            "cert",
        ),
        (
            "traefik sticky on service",
            "{exposure: {host: a.b, ingress: {className: traefik, controller: traefik}}}",
            ObjectKind::Service,
            "/metadata/annotations/traefik.ingress.kubernetes.io~1service.sticky.cookie",
            "true",
        ),
        (
            "gateway cookie",
            "{exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}",
            ObjectKind::HttpRoute,
            "/spec/rules/0/sessionPersistence/type",
            "Cookie",
        ),
        (
            "gateway parent",
            "{exposure: {host: a.b, gateway: {parentRef: {name: gw, namespace: infra}}}}",
            ObjectKind::HttpRoute,
            "/spec/parentRefs/0/namespace",
            "infra",
        ),
    ];
    for (case, spec, kind, pointer, want) in cases {
        let objects = desired_objects(&cluster(spec), &SecretDigests::default());
        let object = find(&objects, *kind, "chat").to_json().expect("json");
        assert_eq!(
            object.pointer(pointer).and_then(|v| v.as_str()),
            Some(*want),
            "case {case:?}: {object}"
        );
    }
    let nginx = desired_objects(
        &cluster("{exposure: {host: a.b, ingress: {className: nginx}}}"),
        &SecretDigests::default(),
    );
    let svc = find(&nginx, ObjectKind::Service, "chat")
        .to_json()
        .expect("json");
    assert!(
        svc.pointer("/spec/sessionAffinity").is_none(),
        "no ClientIP affinity behind an ingress"
    );
}

#[test]
fn redis_network_policy_admits_only_push_pods() {
    let vc = cluster("{}");
    let np = find(
        &desired_objects(&vc, &SecretDigests::default()),
        ObjectKind::NetworkPolicy,
        "chat-redis",
    )
    .to_json()
    .expect("json");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"][names::LABEL_COMPONENT],
        names::COMPONENT_REDIS
    );
    let from = &np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(from[names::LABEL_COMPONENT], names::COMPONENT_SERVER);
    assert_eq!(from[names::LABEL_INSTANCE], "chat");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 6379);
}

#[test]
fn redis_persistence_variants() {
    let plain = find(
        &desired_objects(&cluster("{}"), &SecretDigests::default()),
        ObjectKind::StatefulSet,
        "chat-redis",
    )
    .to_json()
    .expect("json");
    assert!(plain["spec"]["volumeClaimTemplates"].is_null());
    let persistent = find(
        &desired_objects(
            &cluster("{redis: {managed: {persistence: {size: 5Gi}}}}"),
            &SecretDigests::default(),
        ),
        ObjectKind::StatefulSet,
        "chat-redis",
    )
    .to_json()
    .expect("json");
    assert_eq!(
        persistent["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert!(persistent.to_string().contains("\"--appendonly\",\"yes\""));
}

#[test]
fn generated_secrets_and_pruning_per_variant() {
    use ObjectKind::*;
    let cases: &[PruneCase] = &[
        (
            "defaults",
            "{}",
            &["chat-api-token", "chat-redis-password"],
            &[
                (Service, "chat-redis-pods"),
                (Service, "chat-redis-sentinel"),
                (StatefulSet, "chat-redis-sentinel"),
                (PodDisruptionBudget, "chat-redis-sentinel"),
                (NetworkPolicy, "chat-redis-sentinel"),
                (Ingress, "chat"),
                (HttpRoute, "chat"),
            ],
        ),
        (
            "replicated redis: nothing of it unwanted",
            "{redis: {managed: {replicas: 3}}}",
            &["chat-api-token", "chat-redis-password"],
            &[(Ingress, "chat"), (HttpRoute, "chat")],
        ),
        (
            "external redis, own token, ingress",
            "{redis: {external: {url: 'redis://r'}}, auth: {apiTokenSecretRef: {name: t, key: k}}, exposure: {host: a.b, ingress: {className: nginx}}}",
            &[],
            &[
                (Service, "chat-redis"),
                (StatefulSet, "chat-redis"),
                (PodDisruptionBudget, "chat-redis"),
                (NetworkPolicy, "chat-redis"),
                (Service, "chat-redis-pods"),
                (Service, "chat-redis-sentinel"),
                (StatefulSet, "chat-redis-sentinel"),
                (PodDisruptionBudget, "chat-redis-sentinel"),
                (NetworkPolicy, "chat-redis-sentinel"),
                (Secret, "chat-redis-password"),
                (Secret, "chat-api-token"),
                (HttpRoute, "chat"),
            ],
        ),
    ];
    for (case, spec, secrets_want, unwanted_want) in cases {
        let vc = cluster(spec);
        let names: Vec<String> = secrets::generated_secrets(&vc)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            secrets_want
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            "case {case:?}"
        );
        let mut unwanted = unwanted_objects(&vc);
        let mut want: Vec<(ObjectKind, String)> = unwanted_want
            .iter()
            .map(|(k, n)| (*k, n.to_string()))
            .collect();
        unwanted.sort();
        want.sort();
        assert_eq!(unwanted, want, "case {case:?}");
    }
    let value = secrets::random_value();
    assert_eq!(value.len(), 64);
    assert_ne!(value, secrets::random_value());
}

#[test]
fn endpoint_per_mode() {
    let cases: &[(&str, &str, &str)] = &[
        ("service", "{}", "http://chat.ns.svc:3000"),
        (
            "ingress",
            "{exposure: {host: a.b, ingress: {className: nginx}}}",
            "http://a.b",
        ),
        (
            "ingress tls",
            "{exposure: {host: a.b, tls: {secretName: c}, ingress: {className: nginx}}}",
            "https://a.b",
        ),
    ];
    for (case, spec, want) in cases {
        assert_eq!(
            crate::objects::exposure::endpoint(&cluster(spec)),
            *want,
            "case {case:?}"
        );
    }
}
