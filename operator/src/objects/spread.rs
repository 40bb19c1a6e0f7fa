//! Where a set's pods go: spread over zones, then over nodes, softly (a cluster of one
//! zone or one node still runs them all), so losing a zone or a node takes a share of
//! the set, not all of it.

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const NODE: &str = "kubernetes.io/hostname";

/// Soft spread of the pods `selector` picks: at most one more per zone, then per node,
/// than anywhere else.
pub fn over_zones_and_nodes(selector: &LabelSelector) -> Vec<TopologySpreadConstraint> {
    [ZONE, NODE]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            label_selector: Some(selector.clone()),
            ..Default::default()
        })
        .collect()
}
