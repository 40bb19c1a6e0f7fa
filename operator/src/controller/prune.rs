//! Step 4 of a reconcile: delete the owned objects the spec no longer wants
//! (an exposure-mode or Redis-mode switch).

use crate::objects;
use crate::validate::ValidatedCluster;
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions};
use kube::{Client, ResourceExt};

#[derive(Debug, thiserror::Error)]
#[error("pruning objects the spec no longer wants: {0}")]
pub struct PruneError(#[from] pub(super) kube::Error);

/// Delete the owned objects the spec no longer wants. Only objects whose
/// controller owner is this PushCluster (by uid) are touched, and the delete is
/// preconditioned on the uid read. Returns `Kind/name` of what was deleted.
pub async fn prune(client: &Client, vc: &ValidatedCluster) -> Result<Vec<String>, PruneError> {
    let Some(uid) = vc.uid.as_deref() else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    for (kind, name) in objects::unwanted_objects(vc) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &vc.namespace, &kind.api_resource());
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
