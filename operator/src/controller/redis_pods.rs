//! Step 1 (before the apply): the pods of a replicated Redis that are going away. When
//! the primary's pod is terminating (deleted, evicted, drained), its preStop hook has the
//! Sentinels promote a replica, and until the push pods follow the new primary a publish
//! waits or is answered 503: RedisReady says so (FailingOver) instead of staying True
//! through the switch. The controller watches these pods (`runtime::run`) and the
//! reconcile says it before applying anything (`status::failing_over`): the whole
//! pipeline takes longer than the switchover it announces (about a second).

use crate::objects::labels::{Component, selector_string};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

/// A Redis pod with a deletion timestamp, and the address it served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminatingPod {
    pub name: String,
    pub ip: String,
}

/// The terminating pods among `pods` that still have an address.
pub fn terminating(pods: &[Pod]) -> Vec<TerminatingPod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some(TerminatingPod {
                name: p.name_any(),
                ip,
            })
        })
        .collect()
}

/// The terminating pods of a replicated managed Redis (none for one Redis or an external
/// one). Only read for a condition: a failed list is logged and taken as none, never a
/// failed reconcile.
pub async fn terminating_of(client: &Client, vc: &ValidatedCluster) -> Vec<TerminatingPod> {
    if vc
        .spec
        .redis
        .managed
        .as_ref()
        .is_none_or(|m| m.replicas < 2)
    {
        return Vec::new();
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &vc.namespace);
    let selector = selector_string(vc, Component::Redis);
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(pods) => {
            let going = terminating(&pods.items);
            for pod in &going {
                tracing::info!(cluster = %vc.name, pod = %pod.name, ip = %pod.ip, "Redis pod terminating");
            }
            going
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing the Redis pods failed");
            Vec::new()
        }
    }
}

/// The terminating pod that serves `primary` (`host:port`, as the push pods name it).
pub fn serving<'a>(pods: &'a [TerminatingPod], primary: &str) -> Option<&'a TerminatingPod> {
    let host = primary.rsplit_once(':').map_or(primary, |(host, _)| host);
    pods.iter().find(|p| p.ip == host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut metadata = json!({"name": name});
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-12-07T10:00:00Z");
        }
        serde_json::from_value(json!({"metadata": metadata, "status": {"podIP": ip}})).expect("pod")
    }

    #[test]
    fn only_pods_being_deleted_that_have_an_address_count() {
        let pods = [
            pod("chat-redis-0", Some("10.0.0.5"), true),
            pod("chat-redis-1", Some("10.0.0.6"), false),
            pod("chat-redis-2", None, true),
        ];
        assert_eq!(
            terminating(&pods),
            [TerminatingPod {
                name: "chat-redis-0".into(),
                ip: "10.0.0.5".into()
            }]
        );
    }

    #[test]
    fn the_primary_is_matched_by_its_host_not_a_prefix() {
        let pods = terminating(&[pod("chat-redis-0", Some("10.0.0.5"), true)]);
        assert_eq!(
            serving(&pods, "10.0.0.5:6379").map(|p| p.name.as_str()),
            Some("chat-redis-0")
        );
        assert_eq!(serving(&pods, "10.0.0.50:6379"), None);
        assert_eq!(serving(&pods, "10.0.0.6:6379"), None);
    }
}
