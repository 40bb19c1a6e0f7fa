//! Secrets the operator generates: the managed-Redis password and, when the
//! user names none, the publish API token. Generated once and never rotated by
//! a re-render: the controller only creates them when absent.

use super::labels::{self, Component};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use std::collections::BTreeMap;

pub const API_TOKEN_KEY: &str = "token";
pub const REDIS_PASSWORD_KEY: &str = "password";

/// One Secret the operator must make sure exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSecret {
    pub name: String,
    pub key: &'static str,
    pub component: Component,
}

/// The Secrets this cluster needs generated.
pub fn generated_secrets(vc: &ValidatedCluster) -> Vec<GeneratedSecret> {
    let mut out = Vec::new();
    if vc.spec.auth.api_token_secret_ref.is_none() {
        out.push(GeneratedSecret {
            name: vc.names.api_token_secret.clone(),
            key: API_TOKEN_KEY,
            component: Component::Server,
        });
    }
    if vc.spec.redis.managed.is_some() {
        out.push(GeneratedSecret {
            name: vc.names.redis_password_secret.clone(),
            key: REDIS_PASSWORD_KEY,
            component: Component::Redis,
        });
    }
    out
}

/// A fresh random value: 32 bytes as 64 hex characters (URL- and shell-safe).
pub fn random_value() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secret object holding `value` under the generated key.
pub fn secret(vc: &ValidatedCluster, generated: &GeneratedSecret, value: String) -> Secret {
    Secret {
        metadata: labels::object_meta(vc, &generated.name, generated.component),
        type_: Some("Opaque".to_string()),
        string_data: Some(BTreeMap::from([(generated.key.to_string(), value)])),
        ..Default::default()
    }
}
