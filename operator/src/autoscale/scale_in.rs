//! Scale-in without reconnect storms: choose the least-loaded pods and mark
//! them with `controller.kubernetes.io/pod-deletion-cost` just before the
//! Deployment's replica count drops, so the ReplicaSet controller removes
//! those pods and not busy ones. The victims then drain over the drain window
//! (push-server drains on SIGTERM; terminationGracePeriodSeconds is above it)
//! and the remaining pods absorb the reconnects gradually.
//!
//! Applies to every scale-in the operator performs on the Deployment: its own
//! autoscaler, `kubectl scale`, an HPA or KEDA lowering spec.replicas.

use super::field_manager::patch_params;
use super::load::PodLoad;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch};
use push_contract::kube::ANNOTATION_POD_DELETION_COST;
use serde_json::json;

/// The `k` pods to remove, least loaded first. Pods that answered are chosen by
/// fewest connections (name breaks ties, for a stable choice); pods that did
/// not answer come last, since their load is unknown and may be high.
pub fn choose_victims(pods: &[PodLoad], k: usize) -> Vec<String> {
    let mut ranked: Vec<&PodLoad> = pods.iter().collect();
    ranked.sort_by(|a, b| {
        let key = |p: &PodLoad| (p.connections.is_none(), p.connections.unwrap_or(0));
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    ranked.into_iter().take(k).map(|p| p.name.clone()).collect()
}

/// One pod's deletion-cost annotation change: `Some(cost)` sets it, `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostPatch {
    pub pod: String,
    pub cost: Option<i32>,
}

/// The annotation changes for one scale-in. Unmarked pods cost 0; the victims
/// get negative costs (the least loaded the lowest), so they go first even if
/// the ReplicaSet removes fewer pods than planned. A cost left on a pod by an
/// earlier step that is not a victim now is removed, so stale marks cannot
/// steer this scale-in. Victims already carrying their cost are not patched again.
pub fn cost_patches(pods: &[Pod], victims: &[String]) -> Vec<CostPatch> {
    let current = |name: &str| -> Option<&str> {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.metadata.annotations.as_ref())
            .and_then(|a| a.get(ANNOTATION_POD_DELETION_COST))
            .map(String::as_str)
    };
    let k = i32::try_from(victims.len()).unwrap_or(i32::MAX);
    let mut patches: Vec<CostPatch> = victims
        .iter()
        .enumerate()
        .filter_map(|(rank, pod)| {
            let cost = -(k - i32::try_from(rank).unwrap_or(i32::MAX));
            (current(pod) != Some(cost.to_string().as_str())).then(|| CostPatch {
                pod: pod.clone(),
                cost: Some(cost),
            })
        })
        .collect();
    for pod in pods {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        if current(name).is_some() && !victims.iter().any(|v| v == name) {
            patches.push(CostPatch {
                pod: name.to_string(),
                cost: None,
            });
        }
    }
    patches
}

/// The JSON merge patch of one [`CostPatch`] (`null` deletes the annotation).
/// Annotation values are strings, so the cost is written as one.
pub fn merge_patch(patch: &CostPatch) -> serde_json::Value {
    let value = match patch.cost {
        Some(cost) => json!(cost.to_string()),
        None => serde_json::Value::Null,
    };
    json!({ "metadata": { "annotations": { ANNOTATION_POD_DELETION_COST: value } } })
}

/// Apply the annotation changes, in order, stopping at the first failure: the
/// caller must not lower the replica count unless every victim is marked.
/// A pod that vanished meanwhile (404) is skipped: it is already gone.
pub async fn mark(pods: &Api<Pod>, patches: &[CostPatch]) -> Result<(), kube::Error> {
    for patch in patches {
        match pods
            .patch(
                &patch.pod,
                &patch_params(),
                &Patch::Merge(merge_patch(patch)),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(pod: &str, cost: Option<i32>) -> CostPatch {
        CostPatch {
            pod: pod.into(),
            cost,
        }
    }

    fn pod(name: &str, cost: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.to_string());
        if let Some(c) = cost {
            p.metadata.annotations = Some(
                [(ANNOTATION_POD_DELETION_COST.to_string(), c.to_string())]
                    .into_iter()
                    .collect(),
            );
        }
        p
    }

    #[test]
    fn victims_are_the_least_loaded_then_the_unmeasured() {
        let pods = [
            PodLoad::measured("a", 30),
            PodLoad::unmeasured("b"),
            PodLoad::measured("c", 5),
            PodLoad::measured("d", 5),
            PodLoad::measured("e", 100),
        ];
        let cases: [(&str, usize, &[&str]); 5] = [
            ("none", 0, &[]),
            ("one: fewest connections, name breaks the tie", 1, &["c"]),
            ("two: both lightest", 2, &["c", "d"]),
            ("four: measured before unmeasured", 4, &["c", "d", "a", "e"]),
            (
                "more than there are: all, unmeasured last",
                9,
                &["c", "d", "a", "e", "b"],
            ),
        ];
        for (case, k, want) in cases {
            assert_eq!(choose_victims(&pods, k), want, "case: {case}");
        }
    }

    #[test]
    fn cost_patches_mark_victims_and_clear_stale_marks() {
        let victims = vec!["light".to_string(), "lighter".to_string()];
        let cases: [(&str, Vec<Pod>, Vec<CostPatch>); 3] = [
            (
                "fresh pods: victims get -2, -1 in order",
                vec![pod("light", None), pod("lighter", None), pod("busy", None)],
                vec![patch("light", Some(-2)), patch("lighter", Some(-1))],
            ),
            (
                "stale mark on a busy pod is removed",
                vec![
                    pod("light", None),
                    pod("lighter", None),
                    pod("busy", Some("-1")),
                ],
                vec![
                    patch("light", Some(-2)),
                    patch("lighter", Some(-1)),
                    patch("busy", None),
                ],
            ),
            (
                "a victim already marked with its cost is not patched again",
                vec![
                    pod("light", Some("-2")),
                    pod("lighter", Some("-5")),
                    pod("busy", None),
                ],
                vec![patch("lighter", Some(-1))],
            ),
        ];
        for (case, pods, want) in cases {
            assert_eq!(cost_patches(&pods, &victims), want, "case: {case}");
        }
    }

    #[test]
    fn merge_patch_writes_a_string_or_null() {
        let set = merge_patch(&patch("p", Some(-3)));
        assert_eq!(
            set,
            json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-3"}}})
        );
        let clear = merge_patch(&patch("p", None));
        assert_eq!(
            clear,
            json!({"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":null}}})
        );
    }
}
