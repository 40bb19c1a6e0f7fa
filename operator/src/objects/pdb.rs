//! The PodDisruptionBudget: voluntary evictions (node drains) take one push pod at a time.

use super::labels::{self, Component};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn pod_disruption_budget(vc: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: labels::object_meta(vc, &vc.names.server, Component::Server),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
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
