//! The operator-managed Redis: StatefulSet, Service and a NetworkPolicy that
//! admits only this cluster's push pods on the Redis port.

use super::labels::{self, Component};
use super::security::{restricted_container_security, runtime_default_seccomp};
use crate::resources::ManagedRedis;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const REDIS_PORT: u16 = 6379;
const PORT_NAME: &str = "redis";
const DATA_VOLUME: &str = "data";
/// uid/gid of the `redis` user in the official images.
const REDIS_USER: i64 = 999;

fn selector(vc: &ValidatedCluster) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels::selector_labels(vc, Component::Redis)),
        match_expressions: None,
    }
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
    args
}

pub fn statefulset(vc: &ValidatedCluster, managed: &ManagedRedis) -> StatefulSet {
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
        resources: managed.resources.clone(),
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
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes,
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
            volume_claim_templates: claims,
            ..Default::default()
        },
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
