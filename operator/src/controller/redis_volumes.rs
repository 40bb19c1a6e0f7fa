//! Part of step 3 (apply): Redis pods the StatefulSet controller cannot roll. When
//! persistence is turned on, the recreated StatefulSet adopts pods that have no volume for
//! its claim template; its controller then tries to add that volume to each of them in
//! place, the API server refuses (a pod's volumes are immutable), and the controller stops
//! there on every sync: the pod keeps running without persistence while nothing rolls.
//! So the operator evicts such a pod — one at a time, only while every Redis pod is
//! ready, lowest ordinal first, through the eviction API so the Redis disruption budget
//! has the last word — and the controller creates it again with its claim. Lowest first
//! because the controller walks the pods from ordinal 0 and stops at the first it cannot
//! update: a pod evicted above that one would never be created again (measured: with
//! three Redis pods, evicting ordinal 2 first left the set at two). A replicated Redis keeps its data on the others (the
//! primary's preStop hook fails over first); a single Redis restarts empty, which turning
//! persistence on cannot avoid (it was not persisted).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, ListParams};
use kube::{Client, ResourceExt};

/// What this step found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeRoll {
    /// Pods still without a volume for every claim template.
    pub waiting: Vec<String>,
    /// The pod evicted this time.
    pub evicted: Option<String>,
}

/// Whether `pod` has, for every claim template, the volume the StatefulSet controller
/// would give it (`<template>-<pod>`), as the controller's own `storageMatches` checks.
pub fn has_claims(pod: &Pod, templates: &[String]) -> bool {
    let name = pod.name_any();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    templates.iter().all(|template| {
        volumes.iter().any(|v| {
            v.name == *template
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == format!("{template}-{name}"))
        })
    })
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn ordinal(pod: &Pod) -> i64 {
    pod.name_any()
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(-1)
}

/// The pod to evict now: one without its claims, the lowest ordinal, and only when
/// `replicas` pods exist, every one ready (a pod just moved is back first).
pub fn next_to_evict<'a>(
    pods: &'a [Pod],
    templates: &[String],
    replicas: usize,
) -> Option<&'a Pod> {
    if pods.len() < replicas || !pods.iter().all(ready) {
        return None;
    }
    pods.iter()
        .filter(|p| !has_claims(p, templates))
        .min_by_key(|p| ordinal(p))
}

/// The step: lists the Redis pods (`selector`) and evicts the next one that has to move.
/// A refused eviction (the budget: 429) is no failure; the next look tries again.
pub async fn roll_onto_claims(
    client: &Client,
    namespace: &str,
    selector: &str,
    templates: &[String],
    replicas: usize,
) -> Result<VolumeRoll, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(selector))
        .await?
        .items;
    let waiting: Vec<String> = pods
        .iter()
        .filter(|p| !has_claims(p, templates))
        .map(ResourceExt::name_any)
        .collect();
    let mut roll = VolumeRoll {
        waiting,
        evicted: None,
    };
    if let Some(pod) = next_to_evict(&pods, templates, replicas) {
        let name = pod.name_any();
        match api.evict(&name, &EvictParams::default()).await {
            Ok(_) => roll.evicted = Some(name),
            Err(kube::Error::Api(e)) if e.code == 429 || e.code == 404 => {
                tracing::info!(pod = %name, reason = %e.message, "eviction refused for now");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(roll)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, claim: bool, ready: bool) -> Pod {
        let volume = if claim {
            json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}})
        } else {
            json!({"name": "data", "emptyDir": {}})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [], "volumes": [volume]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("pod")
    }

    fn data() -> Vec<String> {
        vec!["data".to_string()]
    }

    #[test]
    fn a_pod_has_its_claims_only_with_the_controllers_claim_name() {
        assert!(has_claims(&pod("r-0", true, true), &data()));
        assert!(!has_claims(&pod("r-0", false, true), &data()));
        let mut other = pod("r-0", true, true);
        other
            .spec
            .as_mut()
            .expect("spec")
            .volumes
            .as_mut()
            .expect("volumes")[0]
            .persistent_volume_claim
            .as_mut()
            .expect("claim")
            .claim_name = "data-r-1".to_string();
        assert!(!has_claims(&other, &data()));
        // No templates (persistence off): every pod matches, the controller rolls them.
        assert!(has_claims(&pod("r-0", false, true), &[]));
    }

    #[test]
    fn the_lowest_ordinal_without_claims_goes_first_and_only_when_all_are_ready() {
        let pods = [
            pod("r-0", true, true),
            pod("r-1", false, true),
            pod("r-2", false, true),
        ];
        assert_eq!(
            next_to_evict(&pods, &data(), 3)
                .map(ResourceExt::name_any)
                .as_deref(),
            Some("r-1")
        );
        let moving = [
            pod("r-0", false, false),
            pod("r-1", false, true),
            pod("r-2", false, true),
        ];
        assert!(
            next_to_evict(&moving, &data(), 3).is_none(),
            "r-0 is not ready yet"
        );
        let missing = [pod("r-1", false, true), pod("r-2", false, true)];
        assert!(
            next_to_evict(&missing, &data(), 3).is_none(),
            "r-0 is not back yet"
        );
        let done = [pod("r-0", true, true), pod("r-1", true, true)];
        assert!(next_to_evict(&done, &data(), 2).is_none());
        // r-9 sorts before r-10 by ordinal, not by name.
        let many = [pod("r-10", false, true), pod("r-9", false, true)];
        assert_eq!(
            next_to_evict(&many, &data(), 2)
                .map(ResourceExt::name_any)
                .as_deref(),
            Some("r-9")
        );
    }
}
