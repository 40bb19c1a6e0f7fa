//! Step 1 of a reconcile: the Secrets a cluster depends on. Generated Secrets
//! are created when absent (never rotated); referenced Secrets are read, and
//! their contents hashed so a rotation rolls the pods.

use super::context::Context;
use super::plan;
use crate::objects::{SecretDigests, secrets};
use crate::resources::{PushCluster, SecretKeyRef};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("reading or creating Secrets: {0}")]
pub struct DereferenceError(#[from] pub(super) kube::Error);

/// What the Secrets step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dereferenced {
    /// Every Secret is there; the digests of their contents go on the pods.
    Complete(SecretDigests),
    /// Referenced `name/key`s that do not exist: nothing may be applied.
    Missing(Vec<String>),
}

/// Generated Secrets first (an Event when any was created), then the referenced ones.
pub async fn dereference(
    ctx: &Context,
    pc: &PushCluster,
    vc: &ValidatedCluster,
) -> Result<Dereferenced, DereferenceError> {
    let (created, mut found) = ensure_generated_secrets(&ctx.client, vc).await?;
    if let Some(event) = plan::secrets_created(&created) {
        ctx.publish(pc, &event).await;
    }
    let redis_password: Vec<Secret> = found
        .iter()
        .filter(|s| s.name_any() == vc.names.redis_password_secret)
        .cloned()
        .collect();
    match read_referenced_secrets(&ctx.client, vc).await? {
        Ok(referenced) => {
            found.extend(referenced);
            Ok(Dereferenced::Complete(SecretDigests {
                pods: secrets_digest(&found),
                redis: secrets_digest(&redis_password),
            }))
        }
        Err(missing) => Ok(Dereferenced::Missing(missing)),
    }
}

/// Create the generated Secrets that do not exist yet. Returns the names created
/// and, for every generated Secret, its data (for the config hash).
pub async fn ensure_generated_secrets(
    client: &Client,
    vc: &ValidatedCluster,
) -> Result<(Vec<String>, Vec<Secret>), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &vc.namespace);
    let mut created = Vec::new();
    let mut present = Vec::new();
    for generated in secrets::generated_secrets(vc) {
        match api.get_opt(&generated.name).await? {
            Some(secret) => present.push(secret),
            None => {
                let secret = secrets::secret(vc, &generated, secrets::random_value());
                // Created, not applied (an apply would rotate the value), but still
                // under our field manager so managedFields says who wrote it.
                let params = PostParams {
                    field_manager: Some(push_contract::kube::FIELD_MANAGER.to_string()),
                    ..PostParams::default()
                };
                match api.create(&params, &secret).await {
                    Ok(made) => {
                        created.push(generated.name.clone());
                        present.push(made);
                    }
                    // Created concurrently: the existing value wins, nothing rotates.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok((created, present))
}

/// Secret keys the spec references (user-managed Secrets).
pub fn referenced_secret_keys(vc: &ValidatedCluster) -> Vec<SecretKeyRef> {
    let auth = &vc.spec.auth;
    let mut refs: Vec<SecretKeyRef> = Vec::new();
    refs.extend(auth.api_token_secret_ref.clone());
    if let Some(external) = &vc.spec.redis.external {
        refs.extend(external.password_secret_ref.clone());
        refs.extend(external.tls.as_ref().and_then(|t| t.ca_secret_ref.clone()));
    }
    if let Some(jwt) = &auth.jwt {
        refs.extend(jwt.secret_ref.clone());
        refs.extend(jwt.public_key_secret_ref.clone());
    }
    refs.extend(auth.session.as_ref().map(|s| s.secret_ref.clone()));
    refs.extend(
        vc.spec
            .backend
            .as_ref()
            .map(|b| b.signing_secret_ref.clone()),
    );
    refs.extend(
        vc.spec
            .admin_ui
            .as_ref()
            .map(|a| a.password_secret_ref.clone()),
    );
    refs
}

/// Read the referenced Secrets: `Ok(Err(missing))` lists `name/key` that do not exist.
pub async fn read_referenced_secrets(
    client: &Client,
    vc: &ValidatedCluster,
) -> Result<Result<Vec<Secret>, Vec<String>>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &vc.namespace);
    let mut found: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    let mut missing = Vec::new();
    for key in referenced_secret_keys(vc) {
        if !found.contains_key(&key.name) {
            found.insert(key.name.clone(), api.get_opt(&key.name).await?);
        }
        let has_key = found
            .get(&key.name)
            .and_then(Option::as_ref)
            .is_some_and(|s| {
                s.data.as_ref().is_some_and(|d| d.contains_key(&key.key))
                    || s.string_data
                        .as_ref()
                        .is_some_and(|d| d.contains_key(&key.key))
            });
        if !has_key {
            missing.push(format!("{}/{}", key.name, key.key));
        }
    }
    if missing.is_empty() {
        Ok(Ok(found.into_values().flatten().collect()))
    } else {
        Ok(Err(missing))
    }
}

/// Digest of Secrets' contents: a rotation changes it and so rolls the pods.
pub fn secrets_digest(secrets: &[Secret]) -> String {
    let mut sorted: Vec<&Secret> = secrets.iter().collect();
    sorted.sort_by_key(|s| s.name_any());
    let mut hasher = Sha256::new();
    for secret in sorted {
        hasher.update(secret.name_any().as_bytes());
        for (key, value) in secret.data.iter().flatten() {
            hasher.update(key.as_bytes());
            hasher.update(&value.0);
        }
        for (key, value) in secret.string_data.iter().flatten() {
            hasher.update(key.as_bytes());
            hasher.update(value.as_bytes());
        }
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
