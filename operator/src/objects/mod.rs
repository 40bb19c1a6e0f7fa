//! Pure builders, one module per family of owned objects, and
//! [`desired_objects`]: everything the operator applies for one cluster, used
//! by both `push-operator render` and the controller.

pub mod deployment;
pub mod exposure;
pub mod labels;
pub mod pdb;
pub mod redis;
pub mod redis_pod;
pub mod requests;
pub mod secrets;
pub mod security;
pub mod sentinel;
pub mod services;
pub mod spread;

use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, DynamicObject};

/// Kinds of objects the operator owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Deployment,
    Service,
    PodDisruptionBudget,
    StatefulSet,
    NetworkPolicy,
    Ingress,
    HttpRoute,
    Secret,
}

impl ObjectKind {
    pub fn api_resource(self) -> ApiResource {
        match self {
            ObjectKind::Deployment => ApiResource::erase::<Deployment>(&()),
            ObjectKind::Service => ApiResource::erase::<Service>(&()),
            ObjectKind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            ObjectKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            ObjectKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            ObjectKind::Ingress => ApiResource::erase::<Ingress>(&()),
            ObjectKind::HttpRoute => exposure::httproute_resource(),
            ObjectKind::Secret => ApiResource::erase::<Secret>(&()),
        }
    }
}

/// One object the operator applies, typed so tests can inspect it.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredObject {
    Deployment(Deployment),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
    StatefulSet(StatefulSet),
    NetworkPolicy(NetworkPolicy),
    Ingress(Ingress),
    HttpRoute(DynamicObject),
}

impl DesiredObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            DesiredObject::Deployment(_) => ObjectKind::Deployment,
            DesiredObject::Service(_) => ObjectKind::Service,
            DesiredObject::PodDisruptionBudget(_) => ObjectKind::PodDisruptionBudget,
            DesiredObject::StatefulSet(_) => ObjectKind::StatefulSet,
            DesiredObject::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
            DesiredObject::Ingress(_) => ObjectKind::Ingress,
            DesiredObject::HttpRoute(_) => ObjectKind::HttpRoute,
        }
    }

    pub fn name(&self) -> String {
        let meta = match self {
            DesiredObject::Deployment(o) => &o.metadata,
            DesiredObject::Service(o) => &o.metadata,
            DesiredObject::PodDisruptionBudget(o) => &o.metadata,
            DesiredObject::StatefulSet(o) => &o.metadata,
            DesiredObject::NetworkPolicy(o) => &o.metadata,
            DesiredObject::Ingress(o) => &o.metadata,
            DesiredObject::HttpRoute(o) => &o.metadata,
        };
        meta.name.clone().unwrap_or_default()
    }

    /// A Deployment's pod config hash (its template's `ANNOTATION_CONFIG_HASH`):
    /// it changes exactly when the pods roll.
    pub fn pod_config_hash(&self) -> Option<String> {
        let DesiredObject::Deployment(d) = self else {
            return None;
        };
        d.spec
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(push_contract::kube::ANNOTATION_CONFIG_HASH)
            .cloned()
    }

    /// The manifest as JSON, with apiVersion and kind, ready for server-side apply.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        fn typed<K: k8s_openapi::Resource + serde::Serialize>(
            o: &K,
        ) -> serde_json::Result<serde_json::Value> {
            let mut v = serde_json::to_value(o)?;
            v["apiVersion"] = K::API_VERSION.into();
            v["kind"] = K::KIND.into();
            Ok(v)
        }
        match self {
            DesiredObject::Deployment(o) => typed(o),
            DesiredObject::Service(o) => typed(o),
            DesiredObject::PodDisruptionBudget(o) => typed(o),
            DesiredObject::StatefulSet(o) => typed(o),
            DesiredObject::NetworkPolicy(o) => typed(o),
            DesiredObject::Ingress(o) => typed(o),
            DesiredObject::HttpRoute(o) => serde_json::to_value(o),
        }
    }
}

/// Digests of Secret contents for pod templates: a rotation rolls the pods that read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretDigests {
    /// Every Secret the push pods read.
    pub pods: String,
    /// The managed Redis's password (all its pods read).
    pub redis: String,
}

/// Every object to apply for this cluster, in apply order (Redis before the
/// pods that connect to it).
pub fn desired_objects(vc: &ValidatedCluster, digests: &SecretDigests) -> Vec<DesiredObject> {
    let mut out = Vec::new();
    if let Some(managed) = &vc.spec.redis.managed {
        out.push(DesiredObject::Service(redis::service(vc)));
        // The Sentinels before the servers: a template change (image, password) rolls
        // them first, and the servers only once they are done (controller::apply holds
        // the servers' StatefulSet meanwhile), so a primary's switchover never meets
        // Sentinels that are restarting.
        if managed.replicas > 1 {
            out.push(DesiredObject::Service(redis::pods_service(vc)));
            out.push(DesiredObject::Service(sentinel::service(vc)));
            out.push(DesiredObject::StatefulSet(sentinel::statefulset(
                vc,
                managed,
                &digests.redis,
            )));
            out.push(DesiredObject::PodDisruptionBudget(
                sentinel::pod_disruption_budget(vc),
            ));
            out.push(DesiredObject::NetworkPolicy(sentinel::network_policy(vc)));
        }
        out.push(DesiredObject::StatefulSet(redis::statefulset(
            vc,
            managed,
            &digests.redis,
        )));
        out.push(DesiredObject::PodDisruptionBudget(
            redis::pod_disruption_budget(vc),
        ));
        out.push(DesiredObject::NetworkPolicy(redis::network_policy(
            vc, managed,
        )));
    }
    out.push(DesiredObject::Service(services::client_service(vc)));
    out.push(DesiredObject::Service(services::api_service(vc)));
    out.push(DesiredObject::Service(services::headless_service(vc)));
    out.push(DesiredObject::Deployment(deployment::deployment(
        vc,
        &digests.pods,
    )));
    out.push(DesiredObject::PodDisruptionBudget(
        pdb::pod_disruption_budget(vc),
    ));
    if let Some(ingress) = &vc.spec.exposure.ingress {
        out.push(DesiredObject::Ingress(exposure::ingress(vc, ingress)));
    }
    if let Some(gateway) = &vc.spec.exposure.gateway {
        out.push(DesiredObject::HttpRoute(exposure::httproute(vc, gateway)));
    }
    out
}

/// Every (kind, name) this cluster could own under some spec. Those not in
/// the desired set (and owned by the cluster) are pruned: switching exposure
/// mode removes the old Ingress/HTTPRoute, managed→external removes Redis.
pub fn prunable_objects(vc: &ValidatedCluster) -> Vec<(ObjectKind, String)> {
    let n = &vc.names;
    vec![
        (ObjectKind::Service, n.redis.clone()),
        (ObjectKind::StatefulSet, n.redis.clone()),
        (ObjectKind::PodDisruptionBudget, n.redis.clone()),
        (ObjectKind::NetworkPolicy, n.redis.clone()),
        (ObjectKind::Service, n.redis_pods.clone()),
        (ObjectKind::Service, n.redis_sentinel.clone()),
        (ObjectKind::StatefulSet, n.redis_sentinel.clone()),
        (ObjectKind::PodDisruptionBudget, n.redis_sentinel.clone()),
        (ObjectKind::NetworkPolicy, n.redis_sentinel.clone()),
        (ObjectKind::Secret, n.redis_password_secret.clone()),
        (ObjectKind::Secret, n.api_token_secret.clone()),
        (ObjectKind::Ingress, n.server.clone()),
        (ObjectKind::HttpRoute, n.server.clone()),
    ]
}

/// The prunable objects the current spec does not want.
pub fn unwanted_objects(vc: &ValidatedCluster) -> Vec<(ObjectKind, String)> {
    let desired: Vec<(ObjectKind, String)> = desired_objects(vc, &SecretDigests::default())
        .iter()
        .map(|o| (o.kind(), o.name()))
        .chain(
            secrets::generated_secrets(vc)
                .into_iter()
                .map(|s| (ObjectKind::Secret, s.name)),
        )
        .collect();
    prunable_objects(vc)
        .into_iter()
        .filter(|candidate| !desired.contains(candidate))
        .collect()
}

#[cfg(test)]
mod tests;
