//! The side-effecting steps of a reconcile: generated Secrets (create if
//! absent, never rotated), referenced Secrets (read for the config hash),
//! server-side apply of the desired objects, pruning of owned objects the
//! spec no longer wants.

use crate::Result;
use crate::objects::{self, DesiredObject, ObjectKind, secrets};
use crate::resources::SecretKeyRef;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Server-side apply under the operator's field manager, forcing ownership of
/// the fields it sets (`?fieldManager=pushcluster-operator&force=true`).
pub fn apply_params() -> PatchParams {
    PatchParams::apply(push_contract::kube::FIELD_MANAGER).force()
}

fn api(client: &Client, ns: &str, kind: ObjectKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &kind.api_resource())
}

/// Create the generated Secrets that do not exist yet. Returns the names created
/// and, for every generated Secret, its data (for the config hash).
pub async fn ensure_generated_secrets(
    client: &Client,
    vc: &ValidatedCluster,
) -> Result<(Vec<String>, Vec<Secret>)> {
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
                    Err(e) => return Err(e.into()),
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
    refs.extend(
        vc.spec
            .redis
            .external
            .as_ref()
            .and_then(|e| e.password_secret_ref.clone()),
    );
    if let Some(jwt) = &auth.jwt {
        refs.extend(jwt.secret_ref.clone());
        refs.extend(jwt.public_key_secret_ref.clone());
    }
    refs.extend(auth.session.as_ref().map(|s| s.secret_ref.clone()));
    refs
}

/// Read the referenced Secrets: `Ok(Err(missing))` lists `name/key` that do not exist.
pub async fn read_referenced_secrets(
    client: &Client,
    vc: &ValidatedCluster,
) -> Result<std::result::Result<Vec<Secret>, Vec<String>>> {
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

/// Server-side apply one object; returns it as the API server stored it.
pub async fn apply(client: &Client, ns: &str, object: &DesiredObject) -> Result<DynamicObject> {
    let body = object.to_json()?;
    Ok(api(client, ns, object.kind())
        .patch(&object.name(), &apply_params(), &Patch::Apply(&body))
        .await?)
}

/// Delete the owned objects the spec no longer wants. Only objects whose
/// controller owner is this PushCluster (by uid) are touched, and the delete is
/// preconditioned on the uid read. Returns `Kind/name` of what was deleted.
pub async fn prune(client: &Client, vc: &ValidatedCluster) -> Result<Vec<String>> {
    let Some(uid) = vc.uid.as_deref() else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    for (kind, name) in objects::unwanted_objects(vc) {
        let api = api(client, &vc.namespace, kind);
        let existing = match api.get_opt(&name).await {
            Ok(Some(existing)) => existing,
            Ok(None) => continue,
            // The server does not serve this kind at all (e.g. no Gateway API CRDs):
            // it answers a plain-text 404, and nothing of that kind can exist.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        let owned = existing
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        if !owned {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.uid(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => deleted.push(format!("{kind:?}/{name}")),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// Whether this API server serves HTTPRoute (the Gateway API CRDs are installed).
pub async fn gateway_api_installed(client: &Client) -> Result<bool> {
    let request = http::Request::get(format!(
        "/apis/{}/{}",
        objects::exposure::GATEWAY_GROUP,
        objects::exposure::GATEWAY_VERSION
    ))
    .body(Vec::new())
    .map_err(kube::Error::HttpError)?;
    match client
        .request::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>(request)
        .await
    {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == objects::exposure::HTTPROUTE_PLURAL)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
