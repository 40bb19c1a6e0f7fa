//! The status, computed purely from what the apply step observed.
//!
//! Conditions: `Ready`, `RedisReady`, `ExposureReady`, `Progressing`,
//! `Degraded`, each with a reason and a message. A condition keeps its
//! lastTransitionTime while its status does not change.

use super::redis_pods::{self, TerminatingPod};
use crate::autoscale::scrape::RedisLinks;
use crate::events::EventReason;
use crate::objects::sentinel::{QUORUM, SENTINELS};
use crate::resources::{PAUSED_ANNOTATION, PushClusterStatus, RedisStatus};
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const REDIS_READY: &str = "RedisReady";
/// Progressing's reason while an operator-caused rollout waits for its turn.
pub const ROLLOUT_QUEUED: &str = "RolloutQueued";
/// Progressing's reason while the pods roll to a new template.
pub const ROLLING_OUT: &str = "RollingOut";
pub const EXPOSURE_READY: &str = "ExposureReady";
/// ExposureReady reason: an Ingress no controller of its class has admitted yet.
pub const AWAITING_CONTROLLER: &str = "AwaitingController";
/// ExposureReady reason: an HTTPRoute its Gateway's controller has not accepted yet.
pub const ROUTE_NOT_ACCEPTED: &str = "RouteNotAccepted";
/// ExposureReady reason: the HTTPRoute CRD has no session persistence (standard channel).
pub const SESSION_PERSISTENCE_UNSUPPORTED: &str =
    EventReason::SessionPersistenceUnsupported.as_str();
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Present (True) only while the pause annotation is set.
pub const PAUSED: &str = "Paused";
/// RedisReady reason: the primary's pod of a replicated Redis is being deleted and the
/// push pods still use it (controller::redis_pods).
pub const FAILING_OVER: &str = "FailingOver";
/// Ready's reason while RedisReady is not True.
const REDIS_NOT_READY: &str = "RedisNotReady";
/// Degraded reason: pods were all ready and some no longer are.
pub const PODS_UNAVAILABLE: &str = EventReason::PodsUnavailable.as_str();

/// What blocks the cluster from being applied at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// The spec failed validation; the message names the field.
    InvalidSpec(String),
    /// Referenced Secrets (or keys) that do not exist, as `name/key`.
    MissingSecrets(Vec<String>),
    /// A step of the reconcile failed (`ReconcileError::step`: apply, scale_in,
    /// dereference, prune) with the API server's answer; retried with backoff. `reason`
    /// is the Degraded reason (`ReconcileError::reason`).
    StepFailed {
        step: &'static str,
        reason: EventReason,
        message: String,
    },
}

/// State of the exposure object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExposureState {
    /// Applied and routing (service mode; an Ingress a controller admitted; an HTTPRoute
    /// its Gateway accepted with session persistence kept).
    Configured(String),
    /// An Ingress no controller of its class has admitted yet (controller::exposure_check).
    AwaitingController(String),
    /// An HTTPRoute whose Gateway has not accepted it (or its references not resolved).
    RouteNotAccepted(String),
    /// The HTTPRoute CRD has no `sessionPersistence` (standard channel): the API server
    /// refused the route or pruned the field.
    SessionPersistenceDropped,
    /// Gateway mode but the HTTPRoute API is not served by this cluster.
    GatewayApiMissing,
}

/// What the apply step saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub generation: Option<i64>,
    pub desired_replicas: i32,
    /// metadata.generation and status of the Deployment as returned by the apply.
    pub deployment_generation: Option<i64>,
    pub deployment: Option<DeploymentStatus>,
    /// `None` for an external Redis; else ready replicas of the managed StatefulSet.
    pub redis_ready_replicas: Option<i32>,
    /// `spec.redis.managed.replicas` (0 for an external Redis).
    pub redis_replicas_requested: i32,
    /// Ready Sentinels of a replicated managed Redis (`None` without them).
    pub sentinels_ready: Option<i32>,
    /// The Sentinels' StatefulSet is rolling out a new template.
    pub sentinels_rolling: bool,
    /// The hash of the push pods' template now in the Deployment (`None`: not applied).
    pub pod_template_hash: Option<String>,
    /// An operator-caused rollout waiting for its turn (controller::rollout): why, and
    /// when to ask again.
    pub rollout_queued: Option<String>,
    pub rollout_retry: Option<std::time::Duration>,
    pub exposure: Option<ExposureState>,
    pub blocker: Option<Blocker>,
    pub selector: Option<String>,
    pub endpoint: Option<String>,
    /// What the push pods report about their Redis link (`None`: not asked).
    pub redis_links: Option<RedisLinks>,
    /// Pods not ready on purpose: moving clients off after a scale-out (not lost).
    pub pods_rebalancing: i32,
    /// Redis pods still to be moved onto their volume claims (controller::redis_volumes).
    pub redis_pods_without_claims: Vec<String>,
    /// Pods of a replicated Redis being deleted (controller::redis_pods).
    pub redis_pods_terminating: Vec<TerminatingPod>,
}

/// A condition keeps its lastTransitionTime while its status does not change.
fn since(previous: Option<&PushClusterStatus>, c: &Condition, now: &Time) -> Time {
    previous
        .and_then(|p| {
            p.conditions
                .iter()
                .find(|old| old.type_ == c.type_ && old.status == c.status)
        })
        .map_or_else(|| now.clone(), |old| old.last_transition_time.clone())
}

fn condition(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The Deployment's counts as the conditions read them.
struct Pods {
    desired: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    /// The template is rolled out and the replica count settled, so pods that are
    /// not ready are not new ones still starting.
    settled: bool,
    /// Pods lost after the cluster was whole (crash, failing probe, node loss):
    /// Degraded until they are back; a cluster starting or scaling out is not.
    lost: bool,
}

impl Pods {
    fn of(observed: &Observed, previous: Option<&PushClusterStatus>) -> Self {
        let deployment = observed.deployment.clone().unwrap_or_default();
        let desired = observed.desired_replicas;
        let replicas = deployment.replicas.unwrap_or(0);
        let ready = deployment.ready_replicas.unwrap_or(0);
        let updated = deployment.updated_replicas.unwrap_or(0);
        let settled = observed.blocker.is_none()
            && observed.deployment_generation.is_some()
            && deployment.observed_generation >= observed.deployment_generation
            && updated >= desired
            && replicas == desired;
        let was_whole = previous.is_some_and(|p| {
            p.ready_replicas >= desired
                || p.conditions.iter().any(|c| {
                    c.type_ == DEGRADED && c.status == "True" && c.reason == PODS_UNAVAILABLE
                })
        });
        Self {
            desired,
            replicas,
            ready,
            updated,
            settled,
            lost: settled && ready + observed.pods_rebalancing.max(0) < desired && was_whole,
        }
    }
}

/// The new status. `previous` supplies lastTransitionTime of unchanged conditions
/// and the fields other writers own (connections, autoscaler).
pub fn compute(
    observed: &Observed,
    previous: Option<&PushClusterStatus>,
    now: Time,
) -> PushClusterStatus {
    let pods = Pods::of(observed, previous);
    let degraded = degraded(observed.blocker.as_ref(), &pods);
    let redis_topology = redis_status(observed, previous);
    let primary = redis_topology.as_ref().and_then(|r| r.primary.as_deref());
    let redis = redis(observed, primary);
    let exposure = exposure(observed.exposure.as_ref());
    let progressing = progressing(
        observed.blocker.is_some(),
        observed.rollout_queued.as_deref(),
        &observed.redis_pods_without_claims,
        &pods,
    );
    let ready = ready(&pods, &degraded, &redis, &exposure);
    let mut conditions = vec![ready, redis, exposure, progressing, degraded];
    for c in &mut conditions {
        c.observed_generation = observed.generation;
        c.last_transition_time = since(previous, c, &now);
    }
    // A blocked reconcile did not read the Deployment: its pods (of the last applied
    // spec) are as the previous status counted them, not gone.
    let (replicas, ready_replicas) = match (previous, &observed.deployment) {
        (Some(p), None) if observed.blocker.is_some() => (p.replicas, p.ready_replicas),
        _ => (pods.replicas, pods.ready),
    };
    PushClusterStatus {
        // Moves only when a generation was applied in full: a blocked one (invalid, its
        // Secrets missing, a step refused) keeps the last applied generation here, and
        // says in the conditions (their observedGeneration) why this one is not.
        observed_generation: if observed.blocker.is_some() {
            previous.and_then(|p| p.observed_generation)
        } else {
            observed.generation
        },
        replicas,
        ready_replicas,
        selector: observed.selector.clone(),
        endpoint: observed.endpoint.clone(),
        connections: previous.and_then(|p| p.connections),
        autoscaler: previous.and_then(|p| p.autoscaler.clone()),
        redis: redis_topology,
        pod_template_hash: observed
            .pod_template_hash
            .clone()
            .or_else(|| previous.and_then(|p| p.pod_template_hash.clone())),
        conditions,
    }
}

/// The status of a paused cluster: the previous one as it was (nothing was looked at,
/// observedGeneration stays behind a newer spec), with `Paused` True.
pub fn paused(previous: Option<&PushClusterStatus>, now: Time) -> PushClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let since = status
        .true_condition(PAUSED)
        .map_or(now, |c| c.last_transition_time.clone());
    status.conditions.retain(|c| c.type_ != PAUSED);
    let mut paused = condition(
        PAUSED,
        true,
        "Annotated",
        format!(
            "{PAUSED_ANNOTATION} is \"true\": the operator and its autoscaler change nothing for this cluster"
        ),
    );
    paused.last_transition_time = since;
    status.conditions.push(paused);
    status
}

/// Whether `status` says the cluster is paused.
pub fn says_paused(status: Option<&PushClusterStatus>) -> bool {
    status.is_some_and(|s| s.true_condition(PAUSED).is_some())
}

/// status.redis: the managed pods from the apply, the rest from the push pods (kept from
/// the previous status when they were not asked).
fn redis_status(observed: &Observed, previous: Option<&PushClusterStatus>) -> Option<RedisStatus> {
    let before = previous.and_then(|p| p.redis.clone()).unwrap_or_default();
    let mut status = RedisStatus {
        servers_ready: observed.redis_ready_replicas,
        sentinels_ready: observed.sentinels_ready,
        ..before.clone()
    };
    if let Some(links) = &observed.redis_links {
        status.pods_reporting = links.pods;
        status.pods_linked = links.up;
        status.primary = links.primary.clone().or(before.primary);
        status.last_failover_time = links
            .last_failover
            .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
            .map(Time)
            .or(before.last_failover_time);
    }
    (status != RedisStatus::default()).then_some(status)
}

fn degraded(blocker: Option<&Blocker>, pods: &Pods) -> Condition {
    match blocker {
        Some(Blocker::InvalidSpec(message)) => condition(
            DEGRADED,
            true,
            EventReason::InvalidSpec.as_str(),
            message.clone(),
        ),
        Some(Blocker::MissingSecrets(missing)) => condition(
            DEGRADED,
            true,
            EventReason::SecretMissing.as_str(),
            format!(
                "referenced Secret keys not found: {}; nothing is applied until they exist",
                missing.join(", ")
            ),
        ),
        Some(Blocker::StepFailed {
            step,
            reason,
            message,
        }) => condition(
            DEGRADED,
            true,
            reason.as_str(),
            format!("step {step} failed: {message}; retried with backoff"),
        ),
        None if pods.lost => condition(
            DEGRADED,
            true,
            PODS_UNAVAILABLE,
            format!(
                "{}/{} pods ready after all were; waiting for the lost pods to come back",
                pods.ready, pods.desired
            ),
        ),
        None => condition(DEGRADED, false, "AsExpected", "spec applied"),
    }
}

/// `primary`: the one the push pods use (status.redis.primary).
fn redis(observed: &Observed, primary: Option<&str>) -> Condition {
    let requested = observed.redis_replicas_requested;
    let links = observed.redis_links.as_ref().filter(|l| l.pods > 0);
    // The pods' view first: whatever the servers look like, none of them reaches Redis.
    if observed.blocker.is_none()
        && let Some(links) = links.filter(|l| l.up == 0)
    {
        return condition(
            REDIS_READY,
            false,
            "Unreachable",
            format!("no push pod reaches Redis ({} asked)", links.pods),
        );
    }
    match (observed.redis_ready_replicas, observed.sentinels_ready) {
        (None, _) if observed.blocker.is_some() => {
            condition(REDIS_READY, false, "NotApplied", "spec not applied")
        }
        (None, _) => match links {
            Some(l) => condition(
                REDIS_READY,
                true,
                "Linked",
                format!(
                    "{}/{} push pods linked to the external Redis{}",
                    l.up,
                    l.pods,
                    l.primary
                        .as_deref()
                        .map_or_else(String::new, |p| format!(" (primary {p})"))
                ),
            ),
            None => condition(
                REDIS_READY,
                true,
                "External",
                "using the external Redis (no push pod asked yet)",
            ),
        },
        // Replicated: a publish needs the primary and one replica (WAIT 1), a failover
        // needs a quorum of Sentinels.
        (Some(servers), sentinels) if requested > 1 => {
            let sentinels = sentinels.unwrap_or(0);
            let message = format!(
                "{servers}/{requested} Redis pods and {sentinels}/{SENTINELS} Sentinels ready"
            );
            let going = primary.and_then(|p| {
                redis_pods::serving(&observed.redis_pods_terminating, p).map(|pod| (p, pod))
            });
            if let Some((primary, pod)) = going {
                failing_over_condition(primary, pod)
            } else if servers >= 2 && sentinels >= QUORUM {
                condition(REDIS_READY, true, "Replicated", message)
            } else {
                condition(
                    REDIS_READY,
                    false,
                    "Starting",
                    format!(
                        "{message}; publishes need the primary and one replica, failover {QUORUM} Sentinels"
                    ),
                )
            }
        }
        (Some(n), _) if n > 0 => condition(REDIS_READY, true, "Running", "managed Redis is ready"),
        (Some(_), _) => condition(
            REDIS_READY,
            false,
            "Starting",
            "managed Redis has no ready pod yet",
        ),
    }
}

fn failing_over_condition(primary: &str, pod: &TerminatingPod) -> Condition {
    condition(
        REDIS_READY,
        false,
        FAILING_OVER,
        format!(
            "the primary {primary} (pod {}) is being deleted: the Sentinels promote a replica and the push pods follow it; publishes wait or are answered 503 meanwhile",
            pod.name
        ),
    )
}

/// The previous status with RedisReady False (FailingOver) and Ready False, when the
/// primary it names is served by a terminating pod and it does not say so yet; `None`
/// otherwise. Written before the apply (controller::redis_pods), the full status after.
pub fn failing_over(
    previous: Option<&PushClusterStatus>,
    terminating: &[TerminatingPod],
    now: Time,
) -> Option<PushClusterStatus> {
    let previous = previous?;
    let primary = previous.redis.as_ref()?.primary.as_deref()?;
    let pod = redis_pods::serving(terminating, primary)?;
    let said = |c: &Condition| c.type_ == REDIS_READY && c.reason == FAILING_OVER;
    if previous.conditions.iter().any(said) {
        return None;
    }
    let redis = failing_over_condition(primary, pod);
    let ready = condition(READY, false, REDIS_NOT_READY, redis.message.clone());
    let mut status = previous.clone();
    for new in [redis, ready] {
        let last_transition_time = since(Some(previous), &new, &now);
        if let Some(old) = status.conditions.iter_mut().find(|c| c.type_ == new.type_) {
            *old = Condition {
                observed_generation: old.observed_generation,
                last_transition_time,
                ..new
            };
        }
    }
    Some(status)
}

fn exposure(state: Option<&ExposureState>) -> Condition {
    match state {
        Some(ExposureState::Configured(what)) => {
            condition(EXPOSURE_READY, true, "Configured", what.clone())
        }
        Some(ExposureState::AwaitingController(what)) => {
            condition(EXPOSURE_READY, false, AWAITING_CONTROLLER, what.clone())
        }
        Some(ExposureState::RouteNotAccepted(what)) => {
            condition(EXPOSURE_READY, false, ROUTE_NOT_ACCEPTED, what.clone())
        }
        Some(ExposureState::SessionPersistenceDropped) => condition(
            EXPOSURE_READY,
            false,
            SESSION_PERSISTENCE_UNSUPPORTED,
            "the installed HTTPRoute CRD has no spec.rules[].sessionPersistence (the Gateway API's standard channel; session persistence, GEP-1619, is experimental): the API server refuses or drops it, and a route without it would not be sticky (long-polling clients would fail), so none is applied; install the experimental-channel CRDs and a Gateway controller that implements session persistence, or use exposure.ingress or exposure.service",
        ),
        Some(ExposureState::GatewayApiMissing) => condition(
            EXPOSURE_READY,
            false,
            "GatewayAPIMissing",
            "the HTTPRoute API (gateway.networking.k8s.io/v1) is not installed; install the Gateway API CRDs or choose another exposure mode",
        ),
        None => condition(EXPOSURE_READY, false, "NotApplied", "spec not applied"),
    }
}

fn progressing(
    blocked: bool,
    queued: Option<&str>,
    redis_without_claims: &[String],
    pods: &Pods,
) -> Condition {
    let (ready, updated, desired) = (pods.ready, pods.updated, pods.desired);
    if blocked {
        condition(PROGRESSING, false, "Blocked", "see the Degraded condition")
    } else if let Some(why) = queued {
        condition(
            PROGRESSING,
            true,
            ROLLOUT_QUEUED,
            format!("the operator changed the pods' template; their rollout waits: {why}"),
        )
    } else if !redis_without_claims.is_empty() {
        condition(
            PROGRESSING,
            true,
            ROLLING_OUT,
            format!(
                "Redis pods move onto their volume claims one at a time; still to move: {}",
                redis_without_claims.join(", ")
            ),
        )
    } else if pods.lost {
        // Nothing is rolling out: the spec is in place and a pod went away.
        condition(
            PROGRESSING,
            false,
            "Complete",
            format!("{updated}/{desired} pods up to date; see the Degraded condition"),
        )
    } else if pods.settled && ready >= desired {
        condition(
            PROGRESSING,
            false,
            "Complete",
            format!("{ready}/{desired} pods ready and up to date"),
        )
    } else {
        condition(
            PROGRESSING,
            true,
            ROLLING_OUT,
            format!("{updated}/{desired} pods updated, {ready} ready"),
        )
    }
}

/// Ready when nothing is degraded, Redis and the exposure are ready and every pod
/// is; otherwise the first reason in that order.
fn ready(pods: &Pods, degraded: &Condition, redis: &Condition, exposure: &Condition) -> Condition {
    let message = format!("{}/{} pods ready", pods.ready, pods.desired);
    if degraded.status == "True" {
        condition(READY, false, &degraded.reason, degraded.message.clone())
    } else if redis.status != "True" {
        condition(READY, false, REDIS_NOT_READY, redis.message.clone())
    } else if exposure.status != "True" {
        condition(READY, false, "ExposureNotReady", exposure.message.clone())
    } else if pods.ready < pods.desired {
        condition(READY, false, "PodsNotReady", message)
    } else {
        condition(READY, true, "AllReady", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid"))
    }

    fn healthy() -> Observed {
        Observed {
            generation: Some(3),
            desired_replicas: 3,
            deployment_generation: Some(7),
            deployment: Some(DeploymentStatus {
                observed_generation: Some(7),
                replicas: Some(3),
                ready_replicas: Some(3),
                updated_replicas: Some(3),
                ..Default::default()
            }),
            redis_ready_replicas: Some(1),
            redis_replicas_requested: 1,
            sentinels_ready: None,
            sentinels_rolling: false,
            pod_template_hash: Some("abc".into()),
            rollout_queued: None,
            rollout_retry: None,
            pods_rebalancing: 0,
            redis_pods_without_claims: Vec::new(),
            redis_pods_terminating: Vec::new(),
            exposure: Some(ExposureState::Configured("ClientIP affinity".into())),
            blocker: None,
            redis_links: None,
            selector: Some("a=b".into()),
            endpoint: Some("http://x".into()),
        }
    }

    /// A replicated Redis, all ready, whose push pods use `primary`.
    fn replicated(primary: &str) -> Observed {
        Observed {
            redis_replicas_requested: 3,
            redis_ready_replicas: Some(3),
            sentinels_ready: Some(3),
            redis_links: Some(RedisLinks {
                pods: 2,
                up: 2,
                primary: Some(primary.into()),
                last_failover: None,
            }),
            ..healthy()
        }
    }

    fn going(name: &str, ip: &str) -> Vec<TerminatingPod> {
        vec![TerminatingPod {
            name: name.into(),
            ip: ip.into(),
        }]
    }

    fn get<'a>(s: &'a PushClusterStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn conditions_per_situation() {
        // (case, observed, [(condition, status, reason)])
        type Expect = &'static [(&'static str, &'static str, &'static str)];
        let cases: Vec<(&str, Observed, Expect)> = vec![
            (
                "healthy",
                healthy(),
                &[
                    (READY, "True", "AllReady"),
                    (PROGRESSING, "False", "Complete"),
                    (DEGRADED, "False", "AsExpected"),
                ],
            ),
            (
                "rolling out",
                Observed {
                    deployment_generation: Some(8),
                    ..healthy()
                },
                &[
                    (PROGRESSING, "True", "RollingOut"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "Redis pods still to move onto their claims",
                Observed {
                    redis_pods_without_claims: vec!["chat-redis-0".into()],
                    ..healthy()
                },
                &[
                    (PROGRESSING, "True", "RollingOut"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "pods not ready",
                with_ready(1),
                &[
                    (READY, "False", "PodsNotReady"),
                    (PROGRESSING, "True", "RollingOut"),
                ],
            ),
            (
                "redis starting",
                Observed {
                    redis_ready_replicas: Some(0),
                    ..healthy()
                },
                &[
                    (REDIS_READY, "False", "Starting"),
                    (READY, "False", "RedisNotReady"),
                ],
            ),
            (
                "no push pod reaches the managed Redis",
                Observed {
                    redis_links: Some(RedisLinks {
                        pods: 3,
                        up: 0,
                        primary: None,
                        last_failover: None,
                    }),
                    ..healthy()
                },
                &[
                    (REDIS_READY, "False", "Unreachable"),
                    (READY, "False", "RedisNotReady"),
                ],
            ),
            (
                "external redis: the pods linked",
                Observed {
                    redis_ready_replicas: None,
                    redis_replicas_requested: 0,
                    redis_links: Some(RedisLinks {
                        pods: 3,
                        up: 2,
                        primary: Some("10.0.0.5:6379".into()),
                        last_failover: None,
                    }),
                    ..healthy()
                },
                &[(REDIS_READY, "True", "Linked"), (READY, "True", "AllReady")],
            ),
            (
                "external redis: no pod reaches it",
                Observed {
                    redis_ready_replicas: None,
                    redis_replicas_requested: 0,
                    redis_links: Some(RedisLinks {
                        pods: 2,
                        up: 0,
                        primary: None,
                        last_failover: None,
                    }),
                    ..healthy()
                },
                &[(REDIS_READY, "False", "Unreachable")],
            ),
            (
                "external redis: no pod asked yet",
                Observed {
                    redis_ready_replicas: None,
                    redis_replicas_requested: 0,
                    redis_links: Some(RedisLinks::default()),
                    ..healthy()
                },
                &[(REDIS_READY, "True", "External")],
            ),
            (
                "replicated redis: primary, a replica and a quorum of Sentinels ready",
                Observed {
                    redis_replicas_requested: 3,
                    redis_ready_replicas: Some(2),
                    sentinels_ready: Some(2),
                    ..healthy()
                },
                &[
                    (REDIS_READY, "True", "Replicated"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "replicated redis: no replica ready yet (a publish could not be acknowledged)",
                Observed {
                    redis_replicas_requested: 3,
                    redis_ready_replicas: Some(1),
                    sentinels_ready: Some(3),
                    ..healthy()
                },
                &[
                    (REDIS_READY, "False", "Starting"),
                    (READY, "False", "RedisNotReady"),
                ],
            ),
            (
                "replicated redis: the primary's pod is being deleted, the pods still use it",
                Observed {
                    redis_pods_terminating: going("chat-redis-0", "10.0.0.5"),
                    ..replicated("10.0.0.5:6379")
                },
                &[
                    (REDIS_READY, "False", FAILING_OVER),
                    (READY, "False", "RedisNotReady"),
                ],
            ),
            (
                "replicated redis: a replica's pod is being deleted (or the old primary, once the pods follow another)",
                Observed {
                    redis_pods_terminating: going("chat-redis-0", "10.0.0.5"),
                    ..replicated("10.0.0.6:6379")
                },
                &[
                    (REDIS_READY, "True", "Replicated"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "replicated redis: one Sentinel (no failover possible)",
                Observed {
                    redis_replicas_requested: 3,
                    redis_ready_replicas: Some(3),
                    sentinels_ready: Some(1),
                    ..healthy()
                },
                &[
                    (REDIS_READY, "False", "Starting"),
                    (READY, "False", "RedisNotReady"),
                ],
            ),
            (
                "one redis asked for",
                Observed {
                    redis_replicas_requested: 1,
                    ..healthy()
                },
                &[(REDIS_READY, "True", "Running")],
            ),
            (
                "external redis",
                Observed {
                    redis_ready_replicas: None,
                    ..healthy()
                },
                &[
                    (REDIS_READY, "True", "External"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "gateway api missing",
                Observed {
                    exposure: Some(ExposureState::GatewayApiMissing),
                    ..healthy()
                },
                &[
                    (EXPOSURE_READY, "False", "GatewayAPIMissing"),
                    (READY, "False", "ExposureNotReady"),
                ],
            ),
            (
                "missing secret",
                Observed {
                    blocker: Some(Blocker::MissingSecrets(vec!["jwt/key".into()])),
                    deployment: None,
                    exposure: None,
                    redis_ready_replicas: None,
                    ..healthy()
                },
                &[
                    (DEGRADED, "True", "SecretMissing"),
                    (READY, "False", "SecretMissing"),
                    (PROGRESSING, "False", "Blocked"),
                ],
            ),
            (
                "invalid spec",
                Observed {
                    blocker: Some(Blocker::InvalidSpec("spec.x: bad".into())),
                    ..Observed::default()
                },
                &[
                    (DEGRADED, "True", "InvalidSpec"),
                    (READY, "False", "InvalidSpec"),
                ],
            ),
            (
                "apply refused: not Ready, whatever the pods of the last good spec say",
                Observed {
                    blocker: Some(Blocker::StepFailed {
                        step: "apply",
                        reason: EventReason::ApplyFailed,
                        message: "applying StatefulSet/chat-redis failed: 422".into(),
                    }),
                    ..Observed {
                        generation: Some(3),
                        desired_replicas: 3,
                        ..Observed::default()
                    }
                },
                &[
                    (DEGRADED, "True", "ApplyFailed"),
                    (READY, "False", "ApplyFailed"),
                    (PROGRESSING, "False", "Blocked"),
                    (REDIS_READY, "False", "NotApplied"),
                ],
            ),
        ];
        for (case, observed, expect) in cases {
            let status = compute(&observed, None, ts(100));
            for (t, s, reason) in expect {
                let c = get(&status, t);
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    (*s, *reason),
                    "case {case:?}, condition {t}: {}",
                    c.message
                );
            }
            assert_eq!(status.conditions.len(), 5, "case {case:?}");
        }
        let replicas = compute(
            &Observed {
                redis_replicas_requested: 3,
                redis_ready_replicas: Some(3),
                sentinels_ready: Some(1),
                ..healthy()
            },
            None,
            ts(1),
        );
        let message = &get(&replicas, REDIS_READY).message;
        for words in ["3/3 Redis pods", "1/3 Sentinels", "failover 2 Sentinels"] {
            assert!(message.contains(words), "{words:?} not in {message:?}");
        }
        let invalid = compute(
            &Observed {
                blocker: Some(Blocker::InvalidSpec("spec.x: bad".into())),
                ..Observed::default()
            },
            None,
            ts(1),
        );
        assert_eq!(get(&invalid, DEGRADED).message, "spec.x: bad");
    }

    fn with_ready(ready: i32) -> Observed {
        Observed {
            deployment: Some(DeploymentStatus {
                observed_generation: Some(7),
                replicas: Some(3),
                ready_replicas: Some(ready),
                updated_replicas: Some(3),
                ..Default::default()
            }),
            ..healthy()
        }
    }

    #[test]
    fn a_pod_lost_after_the_cluster_was_whole_is_degraded_until_it_is_back() {
        // (case, history of ready counts, [(condition, status, reason)] after the last)
        type Expect = &'static [(&'static str, &'static str, &'static str)];
        let cases: Vec<(&str, Vec<Observed>, Expect)> = vec![
            (
                "first start is not degraded",
                vec![with_ready(0), with_ready(2)],
                &[
                    (DEGRADED, "False", "AsExpected"),
                    (PROGRESSING, "True", "RollingOut"),
                ],
            ),
            (
                "a crash after all were ready",
                vec![healthy(), with_ready(2)],
                &[
                    (DEGRADED, "True", PODS_UNAVAILABLE),
                    (READY, "False", PODS_UNAVAILABLE),
                    (PROGRESSING, "False", "Complete"),
                ],
            ),
            (
                "stays degraded while the pod restarts",
                vec![healthy(), with_ready(2), with_ready(1), with_ready(2)],
                &[(DEGRADED, "True", PODS_UNAVAILABLE)],
            ),
            (
                "clears once all are back",
                vec![healthy(), with_ready(2), healthy()],
                &[
                    (DEGRADED, "False", "AsExpected"),
                    (READY, "True", "AllReady"),
                ],
            ),
            (
                "scaling out is not degraded",
                vec![
                    healthy(),
                    Observed {
                        desired_replicas: 5,
                        deployment: Some(DeploymentStatus {
                            observed_generation: Some(7),
                            replicas: Some(5),
                            ready_replicas: Some(3),
                            updated_replicas: Some(5),
                            ..Default::default()
                        }),
                        ..healthy()
                    },
                ],
                &[
                    (DEGRADED, "False", "AsExpected"),
                    (PROGRESSING, "True", "RollingOut"),
                ],
            ),
            (
                "a rollout is not degraded",
                vec![
                    healthy(),
                    Observed {
                        deployment_generation: Some(8),
                        deployment: Some(DeploymentStatus {
                            observed_generation: Some(8),
                            replicas: Some(4),
                            ready_replicas: Some(2),
                            updated_replicas: Some(1),
                            ..Default::default()
                        }),
                        ..healthy()
                    },
                ],
                &[
                    (DEGRADED, "False", "AsExpected"),
                    (PROGRESSING, "True", "RollingOut"),
                ],
            ),
        ];
        for (case, history, expect) in cases {
            let mut status = None;
            for (i, observed) in history.iter().enumerate() {
                status = Some(compute(observed, status.as_ref(), ts(i as i64)));
            }
            let status = status.expect("a history");
            for (t, s, reason) in expect {
                let c = get(&status, t);
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    (*s, *reason),
                    "case {case:?}, condition {t}: {}",
                    c.message
                );
            }
        }
    }

    #[test]
    fn transition_time_kept_while_status_unchanged_and_other_writers_fields_kept() {
        let first = compute(&healthy(), None, ts(100));
        let mut previous = first.clone();
        previous.connections = Some(42);
        let again = compute(&healthy(), Some(&previous), ts(200));
        assert_eq!(get(&again, READY).last_transition_time, ts(100));
        assert_eq!(again.connections, Some(42));
        let flipped = compute(
            &Observed {
                redis_ready_replicas: Some(0),
                ..healthy()
            },
            Some(&previous),
            ts(300),
        );
        assert_eq!(get(&flipped, READY).last_transition_time, ts(300));
        assert_eq!(get(&flipped, PROGRESSING).last_transition_time, ts(100));
        assert_eq!(flipped.observed_generation, Some(3));
        assert_eq!(flipped.selector.as_deref(), Some("a=b"));
    }

    /// observedGeneration is the last generation applied in full; a blocked one is said
    /// in the conditions, which carry its generation.
    #[test]
    fn a_blocked_generation_does_not_move_observed_generation() {
        let applied = compute(&healthy(), None, ts(100));
        assert_eq!(applied.observed_generation, Some(3));
        let blockers = [
            Blocker::InvalidSpec("spec.x: bad".into()),
            Blocker::MissingSecrets(vec!["jwt/key".into()]),
            Blocker::StepFailed {
                step: "prune",
                reason: EventReason::ReconcileFailed,
                message: "deleting Ingress/chat failed: 500".into(),
            },
        ];
        for blocker in blockers {
            let blocked = Observed {
                generation: Some(4),
                blocker: Some(blocker.clone()),
                ..healthy()
            };
            let status = compute(&blocked, Some(&applied), ts(200));
            assert_eq!(status.observed_generation, Some(3), "{blocker:?}");
            let degraded = get(&status, DEGRADED);
            assert_eq!(degraded.observed_generation, Some(4), "{blocker:?}");
            assert_eq!(degraded.status, "True", "{blocker:?}");
        }
        let failed = compute(
            &Observed {
                generation: Some(4),
                blocker: Some(Blocker::StepFailed {
                    step: "prune",
                    reason: EventReason::ReconcileFailed,
                    message: "deleting Ingress/chat failed: 500".into(),
                }),
                ..healthy()
            },
            Some(&applied),
            ts(200),
        );
        let degraded = get(&failed, DEGRADED);
        assert_eq!(degraded.reason, "ReconcileFailed");
        assert_eq!(
            degraded.message,
            "step prune failed: deleting Ingress/chat failed: 500; retried with backoff"
        );
        assert_eq!(get(&failed, READY).status, "False");
    }

    #[test]
    fn the_redis_topology_keeps_what_the_pods_said_last() {
        let mut asked = replicated("10.0.0.7:6379");
        if let Some(links) = asked.redis_links.as_mut() {
            links.last_failover = Some(1_796_570_000);
        }
        let first = compute(&asked, None, ts(100));
        let redis = first.redis.clone().expect("status.redis");
        assert_eq!(
            (
                redis.primary.as_deref(),
                redis.servers_ready,
                redis.sentinels_ready,
                redis.pods_linked,
                redis.pods_reporting
            ),
            (Some("10.0.0.7:6379"), Some(3), Some(3), 2, 2)
        );
        assert_eq!(
            redis.last_failover_time.as_ref().map(|t| t.0.as_second()),
            Some(1_796_570_000)
        );
        // Not asked this time (no autoscaler step): the pods' part stays as it was.
        let later = compute(
            &Observed {
                redis_links: None,
                redis_ready_replicas: Some(2),
                ..asked
            },
            Some(&first),
            ts(200),
        );
        let redis_later = later.redis.expect("status.redis");
        assert_eq!(redis_later.servers_ready, Some(2));
        assert_eq!(redis_later.primary, redis.primary);
        assert_eq!(redis_later.last_failover_time, redis.last_failover_time);
        assert_eq!(compute(&Observed::default(), None, ts(1)).redis, None);
    }

    #[test]
    fn the_primary_going_away_is_said_before_the_apply_once() {
        let before = compute(&replicated("10.0.0.5:6379"), None, ts(100));
        assert_eq!(get(&before, REDIS_READY).status, "True");
        let primary_going = going("chat-redis-0", "10.0.0.5");
        let said = failing_over(Some(&before), &primary_going, ts(200)).expect("said at once");
        let redis = get(&said, REDIS_READY);
        assert_eq!(
            (redis.status.as_str(), redis.reason.as_str()),
            ("False", FAILING_OVER)
        );
        assert!(redis.message.contains("chat-redis-0"), "{}", redis.message);
        assert_eq!(redis.last_transition_time, ts(200));
        assert_eq!(get(&said, READY).status, "False");
        assert_eq!(said.redis, before.redis, "everything else as it was");
        assert_eq!(
            failing_over(Some(&said), &primary_going, ts(300)),
            None,
            "said once"
        );
        let replica_going = going("chat-redis-1", "10.0.0.6");
        assert_eq!(failing_over(Some(&before), &replica_going, ts(200)), None);
        assert_eq!(failing_over(None, &primary_going, ts(200)), None);
    }

    #[test]
    fn the_paused_condition_lives_only_while_paused() {
        let running = compute(&healthy(), None, ts(100));
        let paused = super::paused(Some(&running), ts(200));
        assert!(says_paused(Some(&paused)));
        let condition = paused
            .conditions
            .iter()
            .find(|c| c.type_ == PAUSED)
            .expect("Paused");
        assert_eq!(condition.last_transition_time, ts(200));
        assert_eq!(
            paused.conditions.len(),
            running.conditions.len() + 1,
            "the others kept as they were"
        );
        let still = super::paused(Some(&paused), ts(300));
        assert_eq!(
            still, paused,
            "paused again: nothing changes, not even the time"
        );
        let resumed = compute(&healthy(), Some(&paused), ts(400));
        assert!(!says_paused(Some(&resumed)));
        assert!(resumed.conditions.iter().all(|c| c.type_ != PAUSED));
    }

    #[test]
    fn a_queued_operator_rollout_is_progressing_and_keeps_the_applied_hash() {
        let mut observed = healthy();
        observed.rollout_queued = Some("cluster ns/a is rolling out".into());
        observed.pod_template_hash = None;
        let previous = PushClusterStatus {
            pod_template_hash: Some("old".into()),
            ..PushClusterStatus::default()
        };
        let status = compute(&observed, Some(&previous), ts(10));
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRESSING)
            .expect("Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", ROLLOUT_QUEUED)
        );
        assert!(progressing.message.contains("ns/a is rolling out"));
        assert_eq!(status.pod_template_hash.as_deref(), Some("old"));
        assert_eq!(
            compute(&healthy(), Some(&previous), ts(10))
                .pod_template_hash
                .as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn a_pod_moving_clients_off_is_not_a_lost_pod() {
        let mut observed = healthy();
        if let Some(d) = observed.deployment.as_mut() {
            d.ready_replicas = Some(2);
        }
        let previous = PushClusterStatus {
            ready_replicas: 3,
            ..PushClusterStatus::default()
        };
        let degraded = |o: &Observed| {
            compute(o, Some(&previous), ts(10))
                .conditions
                .into_iter()
                .find(|c| c.type_ == DEGRADED)
                .expect("Degraded")
        };
        assert_eq!(degraded(&observed).reason, PODS_UNAVAILABLE);
        observed.pods_rebalancing = 1;
        assert_eq!(degraded(&observed).status, "False");
    }
}
