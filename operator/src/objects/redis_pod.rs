//! What every pod of the managed Redis shares, servers and Sentinels alike: the Redis
//! port, the image's user, the password variable and the digest that restarts the pods
//! when it changes, the pod security context, and which pods may talk to them.

use super::labels::{self, Component};
use super::security::runtime_default_seccomp;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, PodSecurityContext, SecretKeySelector};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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
