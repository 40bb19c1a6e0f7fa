//! Table tests of the builders, one row per spec variant.

use super::*;
use crate::resources::PushCluster;
use crate::validate::{ValidatedCluster, validate};
use push_contract::{env, kube as names};

pub(super) fn cluster(spec: &str) -> ValidatedCluster {
    let yaml = format!(
        "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: chat, namespace: ns, uid: u1}}\nspec: {spec}"
    );
    let pc: PushCluster = serde_yaml_ng::from_str(&yaml).expect("test yaml parses");
    validate(&pc, "default").expect("test spec is valid")
}

/// (case, spec yaml, expected (kind, name) list).
pub(super) type ObjectSetCase<'a> = (&'a str, &'a str, Vec<(ObjectKind, String)>);
/// (case, spec yaml, env name, expected value).
pub(super) type EnvCase<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);
/// (case, spec yaml, env name, expected secret name and key).
pub(super) type SecretEnvCase<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>);
/// (case, spec yaml, kind, JSON pointer, expected value).
pub(super) type ExposureCase<'a> = (&'a str, &'a str, ObjectKind, &'a str, &'a str);
/// (case, spec yaml, generated secrets, unwanted objects).
pub(super) type PruneCase<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(ObjectKind, &'a str)]);

pub(super) fn kinds(objects: &[DesiredObject]) -> Vec<(ObjectKind, String)> {
    objects.iter().map(|o| (o.kind(), o.name())).collect()
}

pub(super) fn find<'a>(
    objects: &'a [DesiredObject],
    kind: ObjectKind,
    name: &str,
) -> &'a DesiredObject {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
}

pub(super) fn env_value(vc: &ValidatedCluster, name: &str) -> Option<String> {
    deployment::push_server_env(vc)
        .into_iter()
        .find(|v| v.name == name)
        .and_then(|v| v.value)
}

pub(super) fn env_secret(vc: &ValidatedCluster, name: &str) -> Option<(String, String)> {
    deployment::push_server_env(vc)
        .into_iter()
        .find(|v| v.name == name)
        .and_then(|v| v.value_from)
        .and_then(|f| f.secret_key_ref)
        .map(|s| (s.name, s.key))
}

#[test]
fn object_set_per_spec_variant() {
    use ObjectKind::*;
    let base = |extra: &[(ObjectKind, &str)]| {
        let mut v = vec![
            (Service, "chat"),
            (Service, "chat-api"),
            (Service, "chat-headless"),
            (Deployment, "chat"),
            (PodDisruptionBudget, "chat"),
        ];
        v.extend_from_slice(extra);
        v.into_iter()
            .map(|(k, n)| (k, n.to_string()))
            .collect::<Vec<_>>()
    };
    let redis: &[(ObjectKind, &str)] = &[
        (Service, "chat-redis"),
        (StatefulSet, "chat-redis"),
        (PodDisruptionBudget, "chat-redis"),
        (NetworkPolicy, "chat-redis"),
    ];
    let cases: Vec<ObjectSetCase> = vec![
        ("managed redis, service exposure", "{}", base(redis)),
        (
            "external redis",
            "{redis: {external: {url: 'redis://r:6379'}}}",
            base(&[]),
        ),
        (
            "ingress",
            "{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, ingress: {className: nginx}}}",
            base(&[(Ingress, "chat")]),
        ),
        (
            "gateway",
            "{redis: {external: {url: 'redis://r'}}, exposure: {host: a.b, gateway: {parentRef: {name: gw}}}}",
            base(&[(HttpRoute, "chat")]),
        ),
    ];
    for (case, spec, want) in cases {
        let mut got = kinds(&desired_objects(&cluster(spec), &SecretDigests::default()));
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "case {case:?}");
    }
}

#[test]
fn replicated_redis_renders_servers_sentinels_and_their_services() {
    use ObjectKind::*;
    let vc = cluster("{redis: {managed: {replicas: 3}}}");
    let objects = desired_objects(&vc, &digests("digest"));
    let mut got = kinds(&objects);
    got.sort();
    let mut want: Vec<(ObjectKind, String)> = [
        (Deployment, "chat"),
        (Service, "chat"),
        (Service, "chat-api"),
        (Service, "chat-headless"),
        (Service, "chat-redis"),
        (Service, "chat-redis-pods"),
        (Service, "chat-redis-sentinel"),
        (StatefulSet, "chat-redis"),
        (StatefulSet, "chat-redis-sentinel"),
        (PodDisruptionBudget, "chat"),
        (PodDisruptionBudget, "chat-redis"),
        (PodDisruptionBudget, "chat-redis-sentinel"),
        (NetworkPolicy, "chat-redis"),
        (NetworkPolicy, "chat-redis-sentinel"),
    ]
    .into_iter()
    .map(|(k, n)| (k, n.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);

    let json = |kind, name| find(&objects, kind, name).to_json().expect("json");
    let servers = json(StatefulSet, "chat-redis");
    assert_eq!(servers["spec"]["replicas"], 3);
    assert_eq!(servers["spec"]["serviceName"], "chat-redis-pods");
    let redis = &servers["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(redis["command"], serde_json::json!(["sh", "-c"]));
    let script = redis["args"][0].as_str().expect("script");
    for part in [
        "SENTINEL get-master-addr-by-name pushcluster",
        "chat-redis-0.chat-redis-pods.ns.svc.cluster.local",
        "--replicaof \"$primary\" 6379",
        "--masterauth \"$REDIS_PASSWORD\"",
        "--maxmemory-policy noeviction",
        "--bind \"$POD_IP\"",
        "--replica-announce-ip \"$POD_IP\"",
    ] {
        assert!(
            script.contains(part),
            "{part:?} not in the script:\n{script}"
        );
    }
    assert!(
        !script.contains("$("),
        "the kubelet would expand $(…) in args: {script}"
    );
    let pre_stop = redis["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .expect("preStop");
    assert!(
        pre_stop.contains("SENTINEL FAILOVER pushcluster"),
        "{pre_stop}"
    );
    let ready = redis["readinessProbe"]["exec"]["command"][2]
        .as_str()
        .expect("readiness");
    assert!(ready.contains("master_link_status:up"), "{ready}");

    let pods = json(Service, "chat-redis-pods");
    assert_eq!(pods["spec"]["clusterIP"], "None");
    assert_eq!(pods["spec"]["publishNotReadyAddresses"], true);

    let sentinels = json(StatefulSet, "chat-redis-sentinel");
    assert_eq!(sentinels["spec"]["replicas"], 3);
    let sentinel = &sentinels["spec"]["template"]["spec"]["containers"][0];
    let script = sentinel["args"][0].as_str().expect("script");
    for part in [
        "sentinel monitor pushcluster $primary 6379 2",
        "sentinel announce-ip $POD_IP",
        "down_after=`expr 4250 + \"$ordinal\" \\* 750`",
        "sentinel down-after-milliseconds pushcluster $down_after",
        "chat-redis-2.chat-redis-pods.ns.svc.cluster.local",
        "--sentinel",
    ] {
        assert!(
            script.contains(part),
            "{part:?} not in the script:\n{script}"
        );
    }
    assert_eq!(
        sentinel["securityContext"]["readOnlyRootFilesystem"], true,
        "the config is written to the pod's volume"
    );

    // Redis admits the Sentinels and the other Redis pods too; the Sentinels the same three.
    for policy in ["chat-redis", "chat-redis-sentinel"] {
        let from: Vec<String> = json(NetworkPolicy, policy)["spec"]["ingress"][0]["from"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["podSelector"]["matchLabels"][names::LABEL_COMPONENT].to_string())
            .collect();
        assert_eq!(
            from,
            ["\"push-server\"", "\"redis\"", "\"redis-sentinel\""],
            "{policy}"
        );
    }

    assert_eq!(
        env_value(&vc, env::REDIS_SENTINELS).as_deref(),
        Some("chat-redis-sentinel.ns.svc:26379")
    );
    assert_eq!(
        env_value(&vc, env::REDIS_SENTINEL_MASTER).as_deref(),
        Some("pushcluster")
    );
    assert_eq!(
        env_value(&vc, env::REDIS_MIN_REPLICAS).as_deref(),
        Some("1")
    );
}

#[test]
fn one_redis_by_default_without_sentinels() {
    let vc = cluster("{}");
    assert_eq!(vc.spec.redis.managed.as_ref().map(|m| m.replicas), Some(1));
    let objects = desired_objects(&vc, &SecretDigests::default());
    assert!(!objects.iter().any(|o| o.name().contains("sentinel")));
    let sts = find(&objects, ObjectKind::StatefulSet, "chat-redis")
        .to_json()
        .expect("json");
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["serviceName"], "chat-redis");
    assert!(sts["spec"]["template"]["spec"]["containers"][0]["command"].is_null());
    for name in [
        env::REDIS_SENTINELS,
        env::REDIS_SENTINEL_MASTER,
        env::REDIS_MIN_REPLICAS,
    ] {
        assert_eq!(env_value(&vc, name), None, "{name}");
    }
}

#[test]
fn every_object_is_labelled_and_owned() {
    let vc = cluster("{exposure: {host: a.b, ingress: {className: nginx}}}");
    for object in desired_objects(&vc, &SecretDigests::default()) {
        let json = object.to_json().expect("serializes");
        let meta = &json["metadata"];
        assert_eq!(meta["namespace"], "ns", "{:?}", object.kind());
        assert_eq!(
            meta["labels"][names::LABEL_MANAGED_BY],
            names::MANAGED_BY,
            "{:?}",
            object.kind()
        );
        assert_eq!(
            meta["labels"][names::LABEL_INSTANCE],
            "chat",
            "{:?}",
            object.kind()
        );
        assert_eq!(
            meta["ownerReferences"][0]["uid"],
            "u1",
            "{:?}",
            object.kind()
        );
        assert_eq!(
            meta["ownerReferences"][0]["kind"],
            "PushCluster",
            "{:?}",
            object.kind()
        );
        assert!(
            json["apiVersion"].is_string() && json["kind"].is_string(),
            "{:?}",
            object.kind()
        );
    }
}

#[test]
fn env_per_spec_variant() {
    // (case, spec, env name, expected plain value)
    let cases: &[EnvCase] = &[
        (
            "managed redis url with resp3",
            "{}",
            env::REDIS_URL,
            Some("redis://chat-redis.ns.svc:6379/0?protocol=resp3"),
        ),
        (
            "external url gets resp3",
            "{redis: {external: {url: 'redis://r:6379/1'}}}",
            env::REDIS_URL,
            Some("redis://r:6379/1?protocol=resp3"),
        ),
        (
            "external url with query",
            "{redis: {external: {url: 'redis://r:6379?x=1'}}}",
            env::REDIS_URL,
            Some("redis://r:6379?x=1&protocol=resp3"),
        ),
        (
            "external url keeps protocol",
            "{redis: {external: {url: 'redis://r?protocol=resp3'}}}",
            env::REDIS_URL,
            Some("redis://r?protocol=resp3"),
        ),
        (
            "external sentinel: the url carries settings only",
            "{redis: {external: {sentinel: {addresses: ['s1:26379', 's2:26379'], masterName: pc}}}}",
            env::REDIS_URL,
            Some("redis://s1:26379/0?protocol=resp3"),
        ),
        (
            "external sentinel: the sentinels",
            "{redis: {external: {sentinel: {addresses: ['s1:26379', 's2:26379'], masterName: pc}}}}",
            env::REDIS_SENTINELS,
            Some("s1:26379,s2:26379"),
        ),
        (
            "external sentinel: the master name",
            "{redis: {external: {sentinel: {addresses: ['s1:26379', 's2:26379'], masterName: pc}}}}",
            env::REDIS_SENTINEL_MASTER,
            Some("pc"),
        ),
        (
            "external sentinel: one replica acknowledges by default",
            "{redis: {external: {sentinel: {addresses: ['s1:26379', 's2:26379'], masterName: pc}}}}",
            env::REDIS_MIN_REPLICAS,
            Some("1"),
        ),
        (
            "external cluster: the url carries settings only",
            "{redis: {external: {cluster: {addresses: ['c1:7000', 'c2:7001']}}}}",
            env::REDIS_URL,
            Some("redis://c1:7000/0?protocol=resp3"),
        ),
        (
            "external cluster: the seed nodes",
            "{redis: {external: {cluster: {addresses: ['c1:7000', 'c2:7001']}}}}",
            env::REDIS_CLUSTER,
            Some("c1:7000,c2:7001"),
        ),
        (
            "external cluster: one replica acknowledges by default",
            "{redis: {external: {cluster: {addresses: ['c1:7000']}}}}",
            env::REDIS_MIN_REPLICAS,
            Some("1"),
        ),
        (
            "external cluster: no sentinels",
            "{redis: {external: {cluster: {addresses: ['c1:7000'], minReplicasToAcknowledge: 0}}}}",
            env::REDIS_SENTINELS,
            None,
        ),
        (
            "external cluster: acknowledgement off",
            "{redis: {external: {cluster: {addresses: ['c1:7000'], minReplicasToAcknowledge: 0}}}}",
            env::REDIS_MIN_REPLICAS,
            Some("0"),
        ),
        (
            "external cluster over tls",
            "{redis: {external: {cluster: {addresses: ['c1:7000']}, tls: {caSecretRef: {name: ca, key: pem}}}}}",
            env::REDIS_URL,
            Some("rediss://c1:7000/0?protocol=resp3"),
        ),
        (
            "external sentinel over tls with the public roots",
            "{redis: {external: {sentinel: {addresses: ['s1:26379'], masterName: pc}, tls: {}}}}",
            env::REDIS_URL,
            Some("rediss://s1:26379/0?protocol=resp3"),
        ),
        (
            "external tls: the mounted ca",
            "{redis: {external: {url: 'rediss://r:6380', tls: {caSecretRef: {name: ca, key: pem}}}}}",
            env::REDIS_CA_FILE,
            Some("/etc/pushcluster/redis-ca/ca.pem"),
        ),
        (
            "external tls without a ca: the public roots",
            "{redis: {external: {url: 'rediss://r:6380', tls: {}}}}",
            env::REDIS_CA_FILE,
            None,
        ),
        (
            "external url: no cluster",
            "{redis: {external: {url: 'redis://r'}}}",
            env::REDIS_CLUSTER,
            None,
        ),
        (
            "external url: no sentinels",
            "{redis: {external: {url: 'redis://r'}}}",
            env::REDIS_SENTINELS,
            None,
        ),
        (
            "drain seconds",
            "{drainSeconds: 45}",
            env::DRAIN_SECONDS,
            Some("45"),
        ),
        (
            "history on by default: max messages from contract",
            "{}",
            env::HISTORY_MAX_MESSAGES,
            Some("1000"),
        ),
        (
            "history on by default: ttl from contract",
            "{}",
            env::HISTORY_TTL_SECONDS,
            Some("300"),
        ),
        (
            "history object without fields gets the defaults",
            "{history: {}}",
            env::HISTORY_MAX_MESSAGES,
            Some("1000"),
        ),
        (
            "history disabled: 0 messages turns it off",
            "{history: {enabled: false, maxMessages: 50}}",
            env::HISTORY_MAX_MESSAGES,
            Some("0"),
        ),
        (
            "history disabled keeps the ttl",
            "{history: {enabled: false}}",
            env::HISTORY_TTL_SECONDS,
            Some("300"),
        ),
        (
            "history custom max messages",
            "{history: {maxMessages: 5000, ttlSeconds: 60}}",
            env::HISTORY_MAX_MESSAGES,
            Some("5000"),
        ),
        (
            "history custom ttl",
            "{history: {maxMessages: 5000, ttlSeconds: 60}}",
            env::HISTORY_TTL_SECONDS,
            Some("60"),
        ),
        (
            "admission absent: connections up to the open-file limit",
            "{}",
            env::MAX_CONNECTIONS,
            Some("0"),
        ),
        (
            "admission absent: handshake rate from contract",
            "{}",
            env::HANDSHAKES_PER_SECOND,
            Some("1000"),
        ),
        (
            "admission absent: header timeout from contract",
            "{}",
            env::HEADER_TIMEOUT_SECONDS,
            Some("10"),
        ),
        (
            "admission object without fields gets the defaults",
            "{admission: {}}",
            env::HANDSHAKES_PER_SECOND,
            Some("1000"),
        ),
        (
            "admission custom max connections",
            "{admission: {maxConnectionsPerPod: 50000, handshakesPerSecond: 0, headerTimeoutSeconds: 30}}",
            env::MAX_CONNECTIONS,
            Some("50000"),
        ),
        (
            "admission handshake rate 0 is no limit",
            "{admission: {maxConnectionsPerPod: 50000, handshakesPerSecond: 0, headerTimeoutSeconds: 30}}",
            env::HANDSHAKES_PER_SECOND,
            Some("0"),
        ),
        (
            "admission custom header timeout",
            "{admission: {maxConnectionsPerPod: 50000, handshakesPerSecond: 0, headerTimeoutSeconds: 30}}",
            env::HEADER_TIMEOUT_SECONDS,
            Some("30"),
        ),
        (
            "delivery absent: each pod receives its rooms only",
            "{}",
            env::FANOUT,
            Some("interest"),
        ),
        (
            "delivery by the whole log",
            "{delivery: {fanout: log}}",
            env::FANOUT,
            Some("log"),
        ),
        (
            "per-user connection cap",
            "{admission: {maxConnectionsPerUser: 5}}",
            env::MAX_CONNECTIONS_PER_USER,
            Some("5"),
        ),
        (
            "no per-user connection cap by default",
            "{}",
            env::MAX_CONNECTIONS_PER_USER,
            Some("0"),
        ),
        ("no backend by default", "{}", env::BACKEND_URL, None),
        ("no admin UI by default", "{}", env::ADMIN_UI_USERNAME, None),
        (
            "admin UI read-only by default",
            "{adminUi: {passwordSecretRef: {name: a, key: p}}}",
            env::ADMIN_UI_READONLY,
            Some("true"),
        ),
        (
            "admin UI username",
            "{adminUi: {username: ops, passwordSecretRef: {name: a, key: p}, readonly: false}}",
            env::ADMIN_UI_USERNAME,
            Some("ops"),
        ),
        (
            "no presence events by default",
            "{}",
            env::PRESENCE_EVENTS,
            Some("false"),
        ),
        (
            "presence events on",
            "{presence: {events: true}}",
            env::PRESENCE_EVENTS,
            Some("true"),
        ),
        (
            "presence events' rate",
            "{presence: {events: true, eventsPerSecondPerRoom: 3}}",
            env::PRESENCE_EVENTS_PER_SECOND,
            Some("3"),
        ),
        (
            "backend url",
            BACKEND,
            env::BACKEND_URL,
            Some("http://orders.shop.svc:8080/ev"),
        ),
        (
            "backend events in order",
            BACKEND,
            env::BACKEND_EVENTS,
            Some("order,peek"),
        ),
        (
            "backend idempotent events",
            BACKEND,
            env::BACKEND_IDEMPOTENT_EVENTS,
            Some("peek"),
        ),
        (
            "backend timeout by default",
            BACKEND,
            env::BACKEND_TIMEOUT_MS,
            Some("5000"),
        ),
        (
            "backend in-flight bound",
            BACKEND,
            env::BACKEND_MAX_IN_FLIGHT,
            Some("16"),
        ),
        (
            "delivery absent: no write window",
            "{}",
            env::WRITE_WINDOW_MS,
            Some("0"),
        ),
        (
            "delivery by interest",
            "{delivery: {fanout: interest, writeWindowMs: 20}}",
            env::FANOUT,
            Some("interest"),
        ),
        (
            "delivery with a write window",
            "{delivery: {fanout: interest, writeWindowMs: 20}}",
            env::WRITE_WINDOW_MS,
            Some("20"),
        ),
        (
            "listen from contract",
            "{}",
            env::LISTEN,
            Some(push_contract::defaults::LISTEN),
        ),
        (
            "admin listen from contract",
            "{}",
            env::ADMIN_LISTEN,
            Some(push_contract::defaults::ADMIN_LISTEN),
        ),
        (
            "max payload",
            "{maxPayloadBytes: 2048}",
            env::MAX_PAYLOAD_BYTES,
            Some("2048"),
        ),
        (
            "no max payload by default",
            "{}",
            env::MAX_PAYLOAD_BYTES,
            None,
        ),
        (
            "jwt public key file",
            "{auth: {jwt: {publicKeySecretRef: {name: k, key: pem}}}}",
            env::JWT_PUBLIC_KEY_FILE,
            Some("/etc/pushcluster/jwt/public-key.pem"),
        ),
        (
            "jwt issuer",
            "{auth: {jwt: {secretRef: {name: k, key: s}, issuer: me}}}",
            env::JWT_ISSUER,
            Some("me"),
        ),
        (
            "session cookie default",
            "{auth: {session: {secretRef: {name: s, key: k}}}}",
            env::SESSION_COOKIE,
            Some("connect.sid"),
        ),
        (
            "user env kept",
            "{env: [{name: PUSH_LOG, value: debug}]}",
            env::LOG,
            Some("debug"),
        ),
    ];
    for (case, spec, name, want) in cases {
        assert_eq!(
            env_value(&cluster(spec), name).as_deref(),
            *want,
            "case {case:?}"
        );
    }
}

/// A backend with one plain and one idempotent event.
const BACKEND: &str = "{backend: {url: 'http://orders.shop.svc:8080/ev', signingSecretRef: {name: orders-signing, key: key}, events: [{name: order}, {name: peek, idempotent: true}], maxInFlightPerPod: 16}}";

#[test]
fn secrets_only_by_reference() {
    // (case, spec, env name, expected secret name/key)
    let cases: &[SecretEnvCase] = &[
        (
            "generated api token",
            "{}",
            env::API_TOKEN,
            Some(("chat-api-token", "token")),
        ),
        (
            "user api token",
            "{auth: {apiTokenSecretRef: {name: mine, key: t}}}",
            env::API_TOKEN,
            Some(("mine", "t")),
        ),
        (
            "managed redis password",
            "{}",
            env::REDIS_PASSWORD,
            Some(("chat-redis-password", "password")),
        ),
        (
            "external redis password",
            "{redis: {external: {url: 'redis://r', passwordSecretRef: {name: rp, key: p}}}}",
            env::REDIS_PASSWORD,
            Some(("rp", "p")),
        ),
        (
            "external redis without password",
            "{redis: {external: {url: 'redis://r'}}}",
            env::REDIS_PASSWORD,
            None,
        ),
        (
            "jwt hs256",
            "{auth: {jwt: {secretRef: {name: j, key: s}}}}",
            env::JWT_SECRET,
            Some(("j", "s")),
        ),
        (
            "admin UI password",
            "{adminUi: {passwordSecretRef: {name: admin-ui, key: password}}}",
            env::ADMIN_UI_PASSWORD,
            Some(("admin-ui", "password")),
        ),
        (
            "backend signing key",
            BACKEND,
            env::BACKEND_SECRET,
            Some(("orders-signing", "key")),
        ),
        (
            "session secret",
            "{auth: {session: {secretRef: {name: s, key: k}}}}",
            env::SESSION_SECRET,
            Some(("s", "k")),
        ),
    ];
    for (case, spec, name, want) in cases {
        let got = env_secret(&cluster(spec), name);
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())),
            "case {case:?}"
        );
    }
    let vc = cluster("{auth: {jwt: {secretRef: {name: j, key: s}}}}");
    assert!(
        deployment::push_server_env(&vc)
            .iter()
            .all(|v| v.value.as_deref().is_none_or(|s| !s.contains("j/s"))),
        "no secret value inlined"
    );
}

#[test]
fn deployment_is_secure_and_drains() {
    let vc = cluster("{drainSeconds: 40, replicas: 4}");
    let objects = desired_objects(&vc, &SecretDigests::default());
    let DesiredObject::Deployment(d) = find(&objects, ObjectKind::Deployment, "chat") else {
        panic!("not a deployment")
    };
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(4));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling");
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert!(pod.termination_grace_period_seconds.expect("grace") > 40);
    let psc = pod.security_context.as_ref().expect("pod security");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().expect("container security");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let ready = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(ready.path.as_deref(), Some(push_contract::paths::READYZ));
    let live = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("liveness");
    assert_eq!(live.path.as_deref(), Some(push_contract::paths::HEALTHZ));
    assert!(
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/tmp")
    );
    let spread = pod.topology_spread_constraints.as_ref().expect("spread");
    assert_eq!(
        spread
            .iter()
            .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
            .collect::<Vec<_>>(),
        [
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
            ("kubernetes.io/hostname", "ScheduleAnyway")
        ],
        "soft spread over zones, then nodes"
    );
    let ann = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .expect("annotations");
    assert_eq!(
        ann["prometheus.io/port"],
        push_contract::defaults::ADMIN_PORT.to_string()
    );
    assert!(ann.contains_key(names::ANNOTATION_CONFIG_HASH));
}

pub(super) fn digests(pods: &str) -> SecretDigests {
    SecretDigests {
        pods: pods.to_string(),
        redis: String::new(),
    }
}

pub(super) fn hash_of(vc: &ValidatedCluster, digest: &str) -> String {
    let objects = desired_objects(vc, &digests(digest));
    let DesiredObject::Deployment(d) = find(&objects, ObjectKind::Deployment, "chat") else {
        panic!("not a deployment")
    };
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .expect("ann")[names::ANNOTATION_CONFIG_HASH]
        .clone()
}

#[test]
fn config_hash_rolls_on_config_and_secret_change_not_on_scale() {
    let base = hash_of(&cluster("{replicas: 2}"), "s1");
    assert_eq!(
        base,
        hash_of(&cluster("{replicas: 7}"), "s1"),
        "scaling must not roll pods"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2, image: other:1}"), "s1"),
        "image change rolls"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2, drainSeconds: 5}"), "s1"),
        "drain change rolls"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2, history: {maxMessages: 10}}"), "s1"),
        "history size change rolls"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2, history: {ttlSeconds: 10}}"), "s1"),
        "history ttl change rolls"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2, history: {enabled: false}}"), "s1"),
        "turning history off rolls"
    );
    assert_eq!(
        base,
        hash_of(
            &cluster("{replicas: 2, history: {maxMessages: 1000}}"),
            "s1"
        ),
        "spelling out the default history does not roll"
    );
    assert_ne!(
        base,
        hash_of(
            &cluster("{replicas: 2, admission: {maxConnectionsPerPod: 100}}"),
            "s1"
        ),
        "connection cap change rolls"
    );
    assert_ne!(
        base,
        hash_of(
            &cluster("{replicas: 2, admission: {handshakesPerSecond: 10}}"),
            "s1"
        ),
        "handshake rate change rolls"
    );
    assert_ne!(
        base,
        hash_of(
            &cluster("{replicas: 2, admission: {headerTimeoutSeconds: 5}}"),
            "s1"
        ),
        "header timeout change rolls"
    );
    assert_eq!(
        base,
        hash_of(
            &cluster("{replicas: 2, admission: {handshakesPerSecond: 1000}}"),
            "s1"
        ),
        "spelling out the default admission does not roll"
    );
    assert_ne!(
        base,
        hash_of(&cluster("{replicas: 2}"), "s2"),
        "secret rotation rolls"
    );
}

#[test]
fn secrets_read_as_files_are_mounted() {
    let vc = cluster(
        "{auth: {jwt: {publicKeySecretRef: {name: k, key: pem}}}, redis: {external: {url: 'rediss://r:6380', tls: {caSecretRef: {name: ca, key: ca.crt}}}}}",
    );
    let objects = desired_objects(&vc, &SecretDigests::default());
    let DesiredObject::Deployment(d) = find(&objects, ObjectKind::Deployment, "chat") else {
        panic!("not a deployment")
    };
    let pod = d.spec.template.spec.as_ref().expect("pod");
    for (volume, secret, key, file, dir) in [
        (
            "jwt-public-key",
            "k",
            "pem",
            deployment::JWT_KEY_FILE,
            deployment::JWT_KEY_DIR,
        ),
        (
            "redis-ca",
            "ca",
            "ca.crt",
            deployment::REDIS_CA_FILE,
            deployment::REDIS_CA_DIR,
        ),
    ] {
        let mounted = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_ref())
            .unwrap_or_else(|| panic!("no secret volume {volume}"));
        assert_eq!(mounted.secret_name.as_deref(), Some(secret));
        let item = &mounted.items.as_ref().expect("items")[0];
        assert_eq!((item.key.as_str(), item.path.as_str()), (key, file));
        assert!(
            pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == volume && m.mount_path == dir && m.read_only == Some(true)),
            "{volume} mounted read-only at {dir}"
        );
    }
}

mod exposure;
mod redis;

#[test]
fn the_push_disruption_budget_follows_spec_disruption() {
    for (spec, want) in [
        ("{}", serde_json::json!(1)),
        ("{disruption: {maxUnavailable: 0}}", serde_json::json!(0)),
        (
            "{disruption: {maxUnavailable: '25%'}}",
            serde_json::json!("25%"),
        ),
    ] {
        let objects = desired_objects(&cluster(spec), &SecretDigests::default());
        let pdb = find(&objects, ObjectKind::PodDisruptionBudget, "chat")
            .to_json()
            .expect("json");
        assert_eq!(pdb["spec"]["maxUnavailable"], want, "{spec}");
    }
}

/// Kubernetes's Sentinels as local mode's: the quorum's verdict at `DOWN_AFTER_MS`, the
/// others `DOWN_AFTER_STAGGER_MS` before and after it.
#[test]
fn sentinels_down_after_is_staggered_around_the_quorum() {
    use super::sentinel::{DOWN_AFTER_MS, down_after_ms};
    let each: Vec<u32> = (0..3).map(|i| down_after_ms(DOWN_AFTER_MS, i)).collect();
    assert_eq!(each, [4250, 5000, 5750]);
    assert_eq!(down_after_ms(500, 0), 0, "never below zero");
}

/// Never BestEffort: without `spec.resources` the push-server container gets requests and
/// a memory limit (no CPU limit); with it, exactly what the spec says.
#[test]
fn push_pods_have_default_resources_unless_the_spec_sets_them() {
    let container = |spec: &str| {
        let objects = desired_objects(&cluster(spec), &SecretDigests::default());
        let deployment = objects
            .iter()
            .find(|o| o.kind() == ObjectKind::Deployment)
            .expect("a Deployment");
        deployment.to_json().expect("json")["spec"]["template"]["spec"]["containers"][0]
            ["resources"]
            .clone()
    };
    assert_eq!(
        container("{}"),
        serde_json::json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}})
    );
    assert_eq!(
        container("{resources: {requests: {cpu: '1'}}}"),
        serde_json::json!({"requests": {"cpu": "1"}})
    );
}
