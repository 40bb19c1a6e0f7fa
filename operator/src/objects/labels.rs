//! The recommended `app.kubernetes.io/*` labels on everything the operator creates.

use crate::validate::ValidatedCluster;
use push_contract::kube as names;
use std::collections::BTreeMap;

/// Which part of the cluster an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Server,
    Redis,
    RedisSentinel,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Server => names::COMPONENT_SERVER,
            Component::Redis => names::COMPONENT_REDIS,
            Component::RedisSentinel => names::COMPONENT_REDIS_SENTINEL,
        }
    }
}

/// The labels a selector matches on: stable for the life of the cluster.
pub fn selector_labels(vc: &ValidatedCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_NAME.to_string(), names::APP_NAME.to_string()),
        (names::LABEL_INSTANCE.to_string(), vc.name.clone()),
        (
            names::LABEL_COMPONENT.to_string(),
            component.as_str().to_string(),
        ),
    ])
}

/// Selector labels plus managed-by and part-of: put on every object's metadata.
pub fn labels(vc: &ValidatedCluster, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(vc, component);
    labels.insert(
        names::LABEL_MANAGED_BY.to_string(),
        names::MANAGED_BY.to_string(),
    );
    labels.insert(
        names::LABEL_PART_OF.to_string(),
        names::APP_NAME.to_string(),
    );
    labels
}

/// The selector in string form (`k=v,k=v`), as the scale subresource wants it.
pub fn selector_string(vc: &ValidatedCluster, component: Component) -> String {
    selector_labels(vc, component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Object metadata with name, namespace, labels and the owner reference.
pub fn object_meta(
    vc: &ValidatedCluster,
    name: &str,
    component: Component,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(vc.namespace.clone()),
        labels: Some(labels(vc, component)),
        owner_references: vc.owner_reference.clone().map(|o| vec![o]),
        ..Default::default()
    }
}
