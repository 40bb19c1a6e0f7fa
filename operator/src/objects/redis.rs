//! The operator-managed Redis servers: StatefulSet, Service, a PodDisruptionBudget and a
//! NetworkPolicy that admits only this cluster's push pods on the Redis port (with
//! replicas also its Redis and Sentinel pods, and the headless Service naming each pod;
//! the Sentinels are in [`super::sentinel`]).

use super::labels::{self, Component};
use super::redis_pod::{
    self, PASSWORD_DIGEST_ANNOTATION, PodSet, REDIS_PORT, REDIS_USER, password_env, redis_security,
    shell, shell_probe,
};
use super::security::restricted_container_security;
use super::sentinel;
use crate::resources::ManagedRedis;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, Lifecycle, LifecycleHandler,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

const PORT_NAME: &str = "redis";
const DATA_VOLUME: &str = "data";
/// Default memory of a Redis container (request = limit).
const DEFAULT_MEMORY: &str = "256Mi";
const DEFAULT_CPU_REQUEST: &str = "100m";
/// `maxmemory` as a share of the memory limit: the rest is for the replication and
/// client output buffers and the copy-on-write of a persistence fork.
const MAXMEMORY_PERCENT: u64 = 75;

/// The Redis container's resources: the spec's, else requests and a memory limit (never
/// BestEffort: that is the first pod a node under memory pressure evicts).
pub fn resources(managed: &ManagedRedis) -> ResourceRequirements {
    managed.resources.clone().unwrap_or_else(|| {
        super::requests::with_memory_limit(DEFAULT_CPU_REQUEST, DEFAULT_MEMORY, DEFAULT_MEMORY)
    })
}

/// `maxmemory` in bytes: a share of the memory limit (else of the request); `None`
/// when neither is set or the quantity is not one [`quantity_bytes`] reads.
pub fn maxmemory(resources: &ResourceRequirements) -> Option<u64> {
    let memory =
        |m: &Option<BTreeMap<String, Quantity>>| m.as_ref().and_then(|m| m.get("memory")).cloned();
    let quantity = memory(&resources.limits).or_else(|| memory(&resources.requests))?;
    let bytes = u128::from(quantity_bytes(&quantity.0)?);
    u64::try_from(bytes * u128::from(MAXMEMORY_PERCENT) / 100).ok()
}

/// Bytes of a Kubernetes memory quantity: plain, decimal (k, M, G, T, P, E) or binary
/// (Ki … Ei) suffixes; `None` for anything else (exponents, fractions, millis).
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let digits = quantity.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = quantity.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// redis-server arguments. `password`: how the container reaches the env variable
/// (`$(REDIS_PASSWORD)`, expanded by the kubelet, or `"$REDIS_PASSWORD"` in a script).
fn redis_args(managed: &ManagedRedis, password: &str) -> Vec<String> {
    let mut args = vec![
        "--port".to_string(),
        REDIS_PORT.to_string(),
        "--requirepass".to_string(),
        password.to_string(),
        "--dir".to_string(),
        "/data".to_string(),
    ];
    if managed.persistence.is_some() {
        args.extend(["--appendonly", "yes"].map(String::from));
    } else {
        args.extend(["--appendonly", "no", "--save", ""].map(String::from));
    }
    // History and sessions expire by TTL; evicting them early would silently break a
    // client's recovery, so a full Redis refuses writes instead (Redis's default too,
    // said here so a changed default or config cannot undo it).
    args.extend(["--maxmemory-policy", "noeviction"].map(String::from));
    if let Some(bytes) = maxmemory(&resources(managed)) {
        args.extend(["--maxmemory".to_string(), bytes.to_string()]);
    }
    args
}

/// The replicated servers' arguments (for [`sentinel::redis_script`]): listening on the
/// pod's address (which the Sentinels and replicas know it by), and every server, the
/// primary too, able to sync from another (Sentinel may demote a primary it judged down).
fn replicated_args(managed: &ManagedRedis) -> Vec<String> {
    let password = "\"$REDIS_PASSWORD\"";
    // Known by the pod's address: a connection's source address need not be it (on the
    // test node every pod's outgoing loopback connections come from 127.0.0.1).
    let mut args = vec![
        "--bind".to_string(),
        "\"$POD_IP\"".to_string(),
        "--replica-announce-ip".to_string(),
        "\"$POD_IP\"".to_string(),
    ];
    args.extend(
        redis_args(managed, password)
            .into_iter()
            .map(|a| if a.is_empty() { "''".to_string() } else { a }),
    );
    args.extend(["--masterauth".to_string(), password.to_string()]);
    // A replica (re)joining is sent the data at once, not after Redis's default 5 s wait
    // for more replicas to share the transfer with.
    args.extend(["--repl-diskless-sync-delay", "0"].map(String::from));
    args
}

/// `password_digest`: a digest of the Redis password Secret (a new one restarts Redis).
/// With `replicas` > 1 the pods run [`sentinel::redis_script`] (whose replica to be is
/// the Sentinels' answer) and are named by the headless `redis_pods` Service.
pub fn statefulset(
    vc: &ValidatedCluster,
    managed: &ManagedRedis,
    password_digest: &str,
) -> StatefulSet {
    let replicated = managed.replicas > 1;
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.to_string()),
            host: None,
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    let (command, args, env) = if replicated {
        (
            Some(vec!["sh".to_string(), "-c".to_string()]),
            vec![sentinel::redis_script(vc, &replicated_args(managed))],
            sentinel::script_env(vc),
        )
    } else {
        (
            None,
            redis_args(managed, "$(REDIS_PASSWORD)"),
            vec![password_env(vc)],
        )
    };
    let lifecycle = replicated.then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(shell(sentinel::redis_pre_stop())),
            ..Default::default()
        }),
        ..Default::default()
    });
    let container = Container {
        name: "redis".to_string(),
        image: Some(managed.image.clone()),
        command,
        args: Some(args),
        env: Some(env),
        lifecycle,
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: i32::from(REDIS_PORT),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        readiness_probe: Some(if replicated {
            // A replica is ready once it holds the primary's data: a rollout then waits
            // for each new pod to be in sync before it stops the next (the primary last).
            shell_probe(sentinel::redis_in_sync(), 2, 10)
        } else {
            probe.clone()
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..probe
        }),
        resources: Some(resources(managed)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_string(),
            mount_path: "/data".to_string(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let (volumes, claims) = match &managed.persistence {
        Some(persistence) => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.to_string()),
                    labels: Some(labels::labels(vc, Component::Redis)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                    storage_class_name: persistence.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(persistence.size.clone()),
                        )])),
                        limits: None,
                    }),
                    ..Default::default()
                }),
                status: None,
            }]),
        ),
        None => (
            Some(vec![Volume {
                name: DATA_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            None,
        ),
    };
    StatefulSet {
        metadata: labels::object_meta(vc, &vc.names.redis, Component::Redis),
        spec: StatefulSetSpec {
            replicas: Some(managed.replicas.max(1)),
            service_name: Some(if replicated {
                vc.names.redis_pods.clone()
            } else {
                vc.names.redis.clone()
            }),
            selector: servers(vc).selector(vc),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::labels(vc, Component::Redis)),
                    annotations: Some(BTreeMap::from([(
                        PASSWORD_DIGEST_ANNOTATION.to_string(),
                        password_digest.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes,
                    priority_class_name: managed.priority_class_name.clone(),
                    topology_spread_constraints: Some(servers(vc).spread(vc)),
                    automount_service_account_token: Some(false),
                    security_context: Some(redis_security(REDIS_USER)),
                    ..Default::default()
                }),
            },
            persistent_volume_claim_retention_policy: managed.persistence.as_ref().map(|p| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(p.when_deleted.as_str().to_string()),
                    when_scaled: Some("Delete".to_string()),
                }
            }),
            volume_claim_templates: claims,
            ..Default::default()
        },
        status: None,
    }
}

/// The servers as a pod set: named after the cluster's Redis, on the Redis port.
pub fn servers(vc: &ValidatedCluster) -> PodSet<'_> {
    PodSet {
        name: &vc.names.redis,
        component: Component::Redis,
        port: REDIS_PORT,
        port_name: PORT_NAME,
    }
}

/// Voluntary evictions (node drains) take one Redis pod at a time: with replicas, never
/// the primary and its last in-sync replica together.
pub fn pod_disruption_budget(vc: &ValidatedCluster) -> PodDisruptionBudget {
    servers(vc).disruption_budget(vc)
}

/// With replicas: the headless Service that gives each Redis pod a DNS name
/// (`<pod>.<it>.<ns>.svc.cluster.local`), also before it is ready, so the first start
/// finds pod 0 and the Sentinels find every server.
pub fn pods_service(vc: &ValidatedCluster) -> Service {
    servers(vc).service(vc, &vc.names.redis_pods, true)
}

pub fn service(vc: &ValidatedCluster) -> Service {
    servers(vc).service(vc, &vc.names.redis, false)
}

/// Only this cluster's push pods may reach Redis (with replicas also the other Redis pods
/// and the Sentinels), and only on its port.
pub fn network_policy(vc: &ValidatedCluster, managed: &ManagedRedis) -> NetworkPolicy {
    let from = if managed.replicas > 1 {
        redis_pod::peers(vc)
    } else {
        vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::selector_labels(vc, Component::Server)),
                match_expressions: None,
            }),
            ..Default::default()
        }]
    };
    servers(vc).network_policy(vc, from)
}
