//! The ONE table of API permissions the operator needs. `push-operator rbac`
//! prints it (the Helm chart's Roles must match it exactly) and the mock-API
//! tests check that every request the controller makes is covered by it and
//! that every reconcile entry is exercised, so it cannot drift.

use serde::Serialize;

/// Why a permission is needed (which part of the operator uses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Requests made by one reconcile (checked against the mock-API scenarios).
    Reconcile,
    /// list+watch of the controller's watched kinds ([`crate::runtime::run`]).
    Watch,
    /// The connection autoscaler (crate::autoscale).
    Autoscale,
    /// The leader-election Lease, in the operator's own namespace.
    LeaderElection,
}

/// One (apiGroup, resource, verb) grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
    pub purpose: Purpose,
}

const fn p(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    purpose: Purpose,
) -> Permission {
    Permission {
        group,
        resource,
        verb,
        purpose,
    }
}

use Purpose::{Autoscale, LeaderElection, Reconcile, Watch};

/// Server-side apply of an object that does not exist yet creates it, which the
/// API server authorizes as `create`; of an existing one as `patch`: both are needed.
pub const PERMISSIONS: &[Permission] = &[
    p("pushcluster.dev", "pushclusters", "list", Watch),
    p("pushcluster.dev", "pushclusters", "watch", Watch),
    p("pushcluster.dev", "pushclusters/status", "patch", Reconcile),
    p("pushcluster.dev", "pushclusters/scale", "patch", Autoscale),
    p("apps", "deployments", "create", Reconcile),
    p("apps", "deployments", "patch", Reconcile),
    p("apps", "deployments", "list", Watch),
    p("apps", "deployments", "watch", Watch),
    p("apps", "statefulsets", "create", Reconcile),
    p("apps", "statefulsets", "patch", Reconcile),
    p("apps", "statefulsets", "get", Reconcile),
    p("apps", "statefulsets", "delete", Reconcile),
    p("apps", "statefulsets", "list", Watch),
    p("apps", "statefulsets", "watch", Watch),
    p("", "services", "create", Reconcile),
    p("", "services", "patch", Reconcile),
    p("", "services", "get", Reconcile),
    p("", "services", "delete", Reconcile),
    p("", "services", "list", Watch),
    p("", "services", "watch", Watch),
    p("", "secrets", "get", Reconcile),
    p("", "secrets", "create", Reconcile),
    p("", "secrets", "delete", Reconcile),
    p("policy", "poddisruptionbudgets", "create", Reconcile),
    p("policy", "poddisruptionbudgets", "patch", Reconcile),
    p("policy", "poddisruptionbudgets", "get", Reconcile),
    p("policy", "poddisruptionbudgets", "delete", Reconcile),
    p("networking.k8s.io", "networkpolicies", "create", Reconcile),
    p("networking.k8s.io", "networkpolicies", "patch", Reconcile),
    p("networking.k8s.io", "networkpolicies", "get", Reconcile),
    p("networking.k8s.io", "networkpolicies", "delete", Reconcile),
    p("networking.k8s.io", "ingresses", "create", Reconcile),
    p("networking.k8s.io", "ingresses", "patch", Reconcile),
    p("networking.k8s.io", "ingresses", "get", Reconcile),
    p("networking.k8s.io", "ingresses", "delete", Reconcile),
    p("networking.k8s.io", "ingresses", "list", Watch),
    p("networking.k8s.io", "ingresses", "watch", Watch),
    p(
        "gateway.networking.k8s.io",
        "httproutes",
        "create",
        Reconcile,
    ),
    p(
        "gateway.networking.k8s.io",
        "httproutes",
        "patch",
        Reconcile,
    ),
    p("gateway.networking.k8s.io", "httproutes", "get", Reconcile),
    p(
        "gateway.networking.k8s.io",
        "httproutes",
        "delete",
        Reconcile,
    ),
    // Redis pods the StatefulSet controller cannot roll onto new claims
    // (controller::redis_volumes) are evicted, so the disruption budget decides (their
    // list: the `pods` `list` below).
    p("", "pods/eviction", "create", Reconcile),
    p("events.k8s.io", "events", "create", Reconcile),
    // kube's Recorder patches an event it already created (a series) within 6 minutes.
    p("events.k8s.io", "events", "patch", Reconcile),
    // The scale-in hook reads the live replica count before a Deployment apply.
    p("apps", "deployments", "get", Autoscale),
    p("", "pods", "list", Autoscale),
    p("", "pods", "patch", Autoscale),
    // A replicated Redis's pods: a primary's deletion is looked at at once
    // (controller::redis_pods; its list: the `pods` `list` above).
    p("", "pods", "watch", Watch),
    p("autoscaling", "horizontalpodautoscalers", "list", Autoscale),
    p("coordination.k8s.io", "leases", "get", LeaderElection),
    p("coordination.k8s.io", "leases", "create", LeaderElection),
    p("coordination.k8s.io", "leases", "update", LeaderElection),
];

/// Whether the table grants `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS
        .iter()
        .any(|p| p.group == group && p.resource == resource && p.verb == verb)
}

/// An rbac.authorization.k8s.io/v1 PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// What `push-operator rbac` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// Needed in every namespace whose PushClusters the operator manages.
    pub namespaced: Vec<PolicyRule>,
    /// Needed in the operator's own namespace (the Lease).
    pub leader_election: Vec<PolicyRule>,
    /// Cluster-scoped resources: none.
    pub cluster: Vec<PolicyRule>,
}

/// One rule per (group, resource), verbs in table order.
fn rules(filter: impl Fn(&Permission) -> bool) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for perm in PERMISSIONS.iter().filter(|p| filter(p)) {
        match out
            .iter_mut()
            .find(|r| r.api_groups[0] == perm.group && r.resources[0] == perm.resource)
        {
            Some(rule) => rule.verbs.push(perm.verb.to_string()),
            None => out.push(PolicyRule {
                api_groups: vec![perm.group.to_string()],
                resources: vec![perm.resource.to_string()],
                verbs: vec![perm.verb.to_string()],
            }),
        }
    }
    out
}

pub fn policy_rules() -> Rules {
    Rules {
        namespaced: rules(|p| p.purpose != LeaderElection),
        leader_election: rules(|p| p.purpose == LeaderElection),
        cluster: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_group_verbs_per_resource_and_split_leader_election() {
        let r = policy_rules();
        let deployments = r
            .namespaced
            .iter()
            .find(|r| r.resources == ["deployments"])
            .expect("deployments rule");
        assert_eq!(
            deployments.verbs,
            ["create", "patch", "list", "watch", "get"]
        );
        assert_eq!(r.leader_election.len(), 1);
        assert_eq!(r.leader_election[0].resources, ["leases"]);
        assert!(r.namespaced.iter().all(|r| r.resources != ["leases"]));
        assert!(allows("", "secrets", "get"));
        assert!(!allows("", "secrets", "list"), "secrets are never listed");
    }

    #[test]
    fn no_duplicate_entries() {
        for (i, a) in PERMISSIONS.iter().enumerate() {
            for b in &PERMISSIONS[i + 1..] {
                assert!(
                    !(a.group == b.group && a.resource == b.resource && a.verb == b.verb),
                    "{a:?} twice"
                );
            }
        }
    }
}
