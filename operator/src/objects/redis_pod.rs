//! What every pod of the managed Redis shares, servers and Sentinels alike: the Redis
//! port, the image's user, the password variable and the digest that restarts the pods
//! when it changes, the pod security context, which pods may talk to them, and the
//! objects each pod set has (Service, disruption budget, NetworkPolicy, spread).

use super::labels::{self, Component};
use super::security::runtime_default_seccomp;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ExecAction, PodSecurityContext, Probe, SecretKeySelector, Service,
    ServicePort, ServiceSpec, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const REDIS_PORT: u16 = 6379;
/// uid/gid of the `redis` user in the official images.
pub const REDIS_USER: i64 = 999;
/// Pod-template annotation: a digest of the Redis password, so a new password restarts
/// Redis with it (the push pods roll on their own digest) instead of locking them out.
pub const PASSWORD_DIGEST_ANNOTATION: &str = "pushcluster.dev/redis-password-digest";

/// The `REDIS_PASSWORD` variable, from the generated Secret.
pub fn password_env(vc: &ValidatedCluster) -> EnvVar {
    EnvVar {
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
    }
}

/// The pod security context of Redis and Sentinel pods: the image's `redis` user.
pub fn redis_security(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// This cluster's push pods, Redis pods and Sentinels: who may reach a replicated Redis's
/// servers and Sentinels.
pub fn peers(vc: &ValidatedCluster) -> Vec<NetworkPolicyPeer> {
    [
        Component::Server,
        Component::Redis,
        Component::RedisSentinel,
    ]
    .into_iter()
    .map(|component| NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(labels::selector_labels(vc, component)),
            match_expressions: None,
        }),
        ..Default::default()
    })
    .collect()
}

/// One of the managed Redis's pod sets (the servers or the Sentinels): the object name
/// its Service, budget and policy carry, its component label and its port.
pub struct PodSet<'a> {
    pub name: &'a str,
    pub component: Component,
    pub port: u16,
    pub port_name: &'a str,
}

impl PodSet<'_> {
    pub fn selector(&self, vc: &ValidatedCluster) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels::selector_labels(vc, self.component)),
            match_expressions: None,
        }
    }

    /// A Service named `name` in front of the set (headless: a DNS name per pod, also
    /// before it is ready).
    pub fn service(&self, vc: &ValidatedCluster, name: &str, headless: bool) -> Service {
        Service {
            metadata: labels::object_meta(vc, name, self.component),
            spec: Some(ServiceSpec {
                cluster_ip: headless.then(|| "None".to_string()),
                publish_not_ready_addresses: headless.then_some(true),
                selector: Some(labels::selector_labels(vc, self.component)),
                ports: Some(vec![ServicePort {
                    name: Some(self.port_name.to_string()),
                    port: i32::from(self.port),
                    target_port: Some(IntOrString::String(self.port_name.to_string())),
                    protocol: Some("TCP".to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Voluntary evictions (node drains) take one pod of the set at a time.
    pub fn disruption_budget(&self, vc: &ValidatedCluster) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: labels::object_meta(vc, self.name, self.component),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(self.selector(vc)),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Only `from` may reach the set, and only on its port.
    pub fn network_policy(
        &self,
        vc: &ValidatedCluster,
        from: Vec<NetworkPolicyPeer>,
    ) -> NetworkPolicy {
        NetworkPolicy {
            metadata: labels::object_meta(vc, self.name, self.component),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(self.selector(vc)),
                policy_types: Some(vec!["Ingress".to_string()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(from),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(i32::from(self.port))),
                        protocol: Some("TCP".to_string()),
                        end_port: None,
                    }]),
                }]),
                egress: None,
            }),
        }
    }

    /// Pods of the set in different zones and on different nodes where the cluster has
    /// them (a zone's or a node's loss then takes one); soft, so a one-node cluster still
    /// runs them all.
    pub fn spread(&self, vc: &ValidatedCluster) -> Vec<TopologySpreadConstraint> {
        super::spread::over_zones_and_nodes(&self.selector(vc))
    }
}

/// A probe running `script` in the image's shell (it reads the container's environment).
pub fn shell_probe(script: String, period_seconds: i32, timeout_seconds: i32) -> Probe {
    Probe {
        exec: Some(shell(script)),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(timeout_seconds),
        ..Default::default()
    }
}

/// `sh -c <script>`.
pub fn shell(script: String) -> ExecAction {
    ExecAction {
        command: Some(vec!["sh".to_string(), "-c".to_string(), script]),
    }
}
