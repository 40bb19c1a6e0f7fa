//! The PodDisruptionBudget: voluntary evictions (node drains) take at most
//! `spec.disruption.maxUnavailable` push pods at a time (default one).

use super::labels::{self, Component};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub fn pod_disruption_budget(vc: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: labels::object_meta(vc, &vc.names.server, Component::Server),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(vc.spec.disruption.max_unavailable.clone()),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector_labels(vc, Component::Server)),
                match_expressions: None,
            }),
            // Pods that are not ready yet may be evicted: they carry no clients.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            ..Default::default()
        }),
        status: None,
    }
}
