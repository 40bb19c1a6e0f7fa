//! The resources the operator gives a container the spec leaves without: CPU and memory
//! requests and a memory limit, no CPU limit. Never BestEffort (the first pods a node
//! under memory pressure evicts); no CPU throttling of a server in the middle of a burst.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Requests `cpu` and `memory`, limits memory to `memory_limit`.
pub fn with_memory_limit(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(cpu)),
            ("memory".to_string(), quantity(memory)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            quantity(memory_limit),
        )])),
        ..Default::default()
    }
}
