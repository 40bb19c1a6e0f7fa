//! The operator-managed Redis: StatefulSet, Service, a PodDisruptionBudget and a
//! NetworkPolicy that admits only this cluster's push pods on the Redis port.

use super::labels::{self, Component};
use super::security::{restricted_container_security, runtime_default_seccomp};
use crate::resources::ManagedRedis;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const REDIS_PORT: u16 = 6379;
const PORT_NAME: &str = "redis";
const DATA_VOLUME: &str = "data";
/// uid/gid of the `redis` user in the official images.
const REDIS_USER: i64 = 999;
/// Pod-template annotation: a digest of the Redis password, so a new password restarts
/// Redis with it (the push pods roll on their own digest) instead of locking them out.
pub const PASSWORD_DIGEST_ANNOTATION: &str = "pushcluster.dev/redis-password-digest";
/// Default memory of a Redis container (request = limit).
const DEFAULT_MEMORY: &str = "256Mi";
const DEFAULT_CPU_REQUEST: &str = "100m";
/// `maxmemory` as a share of the memory limit: the rest is for the replication and
/// client output buffers and the copy-on-write of a persistence fork.
const MAXMEMORY_PERCENT: u64 = 75;

fn selector(vc: &ValidatedCluster) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels::selector_labels(vc, Component::Redis)),
        match_expressions: None,
    }
}

/// The Redis container's resources: the spec's, else requests and a memory limit (never
/// BestEffort: that is the first pod a node under memory pressure evicts).
pub fn resources(managed: &ManagedRedis) -> ResourceRequirements {
    managed
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(DEFAULT_CPU_REQUEST.to_string())),
                ("memory".to_string(), Quantity(DEFAULT_MEMORY.to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity(DEFAULT_MEMORY.to_string()),
            )])),
            ..Default::default()
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

/// redis-server arguments; the password comes from the env (`$(VAR)` is expanded by the kubelet).
fn redis_args(managed: &ManagedRedis) -> Vec<String> {
    let mut args = vec![
        "--port".to_string(),
        REDIS_PORT.to_string(),
        "--requirepass".to_string(),
        "$(REDIS_PASSWORD)".to_string(),
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

/// `password_digest`: a digest of the Redis password Secret (a new one restarts Redis).
pub fn statefulset(
    vc: &ValidatedCluster,
    managed: &ManagedRedis,
    password_digest: &str,
) -> StatefulSet {
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.to_string()),
            host: None,
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    let container = Container {
        name: "redis".to_string(),
        image: Some(managed.image.clone()),
        args: Some(redis_args(managed)),
        env: Some(vec![EnvVar {
            name: "REDIS_PASSWORD".to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: vc.names.redis_password_secret.clone(),
                    key: super::secrets::REDIS_PASSWORD_KEY.to_string(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        }]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: i32::from(REDIS_PORT),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        readiness_probe: Some(probe.clone()),
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
            replicas: Some(1),
            service_name: Some(vc.names.redis.clone()),
            selector: selector(vc),
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
                    // Replicas on different nodes where the cluster has them (a node's loss
                    // then takes one copy); soft, so a one-node cluster still runs them all.
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".to_string(),
                        when_unsatisfiable: "ScheduleAnyway".to_string(),
                        label_selector: Some(selector(vc)),
                        ..Default::default()
                    }]),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(REDIS_USER),
                        run_as_group: Some(REDIS_USER),
                        fs_group: Some(REDIS_USER),
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..Default::default()
                    }),
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

/// Voluntary evictions (node drains) take one Redis pod at a time: with replicas, never
/// the primary and its last in-sync replica together.
pub fn pod_disruption_budget(vc: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: labels::object_meta(vc, &vc.names.redis, Component::Redis),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(vc)),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn service(vc: &ValidatedCluster) -> Service {
    Service {
        metadata: labels::object_meta(vc, &vc.names.redis, Component::Redis),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector_labels(vc, Component::Redis)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: i32::from(REDIS_PORT),
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Only this cluster's push pods may reach Redis, and only on its port.
pub fn network_policy(vc: &ValidatedCluster) -> NetworkPolicy {
    NetworkPolicy {
        metadata: labels::object_meta(vc, &vc.names.redis, Component::Redis),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(vc)),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(labels::selector_labels(vc, Component::Server)),
                        match_expressions: None,
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(REDIS_PORT))),
                    protocol: Some("TCP".to_string()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}
