//! The decisions of a reconcile that are not the status: which Events a step is
//! worth and when to come back. Pure functions of what the steps observed, so
//! the shell ([`super::reconcile`]) only sequences awaits.

use super::status::{self, Blocker};
use crate::events::{EventReason, PendingEvent};
use crate::resources::{PAUSED_ANNOTATION, PushClusterStatus};
use crate::validate::ValidatedCluster;
use std::time::Duration;

/// Re-check a healthy cluster this often (catches rotated referenced Secrets).
pub const RESYNC: Duration = Duration::from_secs(300);
/// Re-check while pods roll out, or while pods are missing.
pub const PROGRESS_RESYNC: Duration = Duration::from_secs(30);
/// Retry a cluster waiting for a referenced Secret or the Gateway API.
pub const MISSING_DEPENDENCY_RETRY: Duration = Duration::from_secs(60);
/// Re-check while RedisReady is False: the pods' Redis links are only seen when the
/// operator looks, and a failover heals them in seconds without changing any object
/// the operator watches (a False condition must not outlive the outage by minutes).
pub const REDIS_DOWN_RESYNC: Duration = Duration::from_secs(5);
/// Re-check while Redis pods wait to be moved onto their volume claims
/// (controller::redis_volumes): the next one goes once the last is back and ready.
pub const REDIS_VOLUME_RESYNC: Duration = Duration::from_secs(5);
/// Re-read the exposure object while ExposureReady is False for want of a controller or
/// of session persistence: an HTTPRoute's status and the CRDs are not watched.
pub const EXPOSURE_PENDING_RESYNC: Duration = Duration::from_secs(10);

/// Requeue delay after `failures` consecutive failures: 5 s doubling, capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

/// What to publish and when to come back; `requeue: None` = only on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub events: Vec<PendingEvent>,
    pub requeue: Option<Duration>,
}

pub fn secrets_created(created: &[String]) -> Option<PendingEvent> {
    // One Event per kind of action: kube's Recorder folds same-reason Events into a series.
    (!created.is_empty()).then(|| {
        PendingEvent::new(
            EventReason::SecretCreated,
            format!("generated Secret(s) {}", created.join(", ")),
        )
    })
}

pub fn scale_in(replicas: i32, victims: &[String]) -> Option<PendingEvent> {
    (!victims.is_empty()).then(|| {
        PendingEvent::new(
            EventReason::ScaleIn,
            format!(
                "scaling in to {replicas}: the pod(s) with the fewest connections go first and drain: {}",
                victims.join(", ")
            ),
        )
    })
}

pub fn pruned(deleted: &[String]) -> Option<PendingEvent> {
    (!deleted.is_empty()).then(|| {
        PendingEvent::new(
            EventReason::Deleted,
            format!(
                "deleted {}: no longer wanted by the spec",
                deleted.join(", ")
            ),
        )
    })
}

/// The StatefulSet fields the API server refuses to change in place, as the operator
/// sets them: the claim templates (name, access modes, class, size) and the Service.
/// Defaults the server adds (volumeMode, status) are left out of the comparison.
fn immutable_fields(statefulset: &serde_json::Value) -> serde_json::Value {
    let spec = &statefulset["spec"];
    let claims: Vec<serde_json::Value> = spec["volumeClaimTemplates"]
        .as_array()
        .map(|templates| {
            templates
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t["metadata"]["name"],
                        "accessModes": t["spec"]["accessModes"],
                        "storageClassName": t["spec"]["storageClassName"],
                        "storage": t["spec"]["resources"]["requests"]["storage"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "volumeClaimTemplates": claims, "serviceName": spec["serviceName"] })
}

/// What changes between the stored StatefulSet and the desired one in fields it cannot
/// change in place (`None`: an apply does it).
pub fn immutable_change(
    current: &serde_json::Value,
    desired: &serde_json::Value,
) -> Option<String> {
    let (before, after) = (immutable_fields(current), immutable_fields(desired));
    (before != after).then(|| format!("{before} -> {after}"))
}

/// Whether a StatefulSet, as an apply returned it, is still rolling out a template: its
/// controller has not seen the latest spec, or not every pod runs the latest template
/// yet. (Not readiness alone: Sentinels not ready for want of a known replica must not
/// hold the servers that would give them one.)
pub fn statefulset_rolling(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    status: Option<&serde_json::Value>,
) -> bool {
    let Some(status) = status else {
        return true;
    };
    let number = |field: &str| status.get(field).and_then(serde_json::Value::as_i64);
    let replicas = number("replicas").unwrap_or(0);
    meta.generation > number("observedGeneration")
        || number("updatedReplicas").unwrap_or(0) < replicas
        || status.get("currentRevision") != status.get("updateRevision")
}

/// A StatefulSet change the API server refuses in place: it is recreated, its pods
/// orphaned and adopted by the new one.
pub fn statefulset_recreated(name: &str, change: &str) -> PendingEvent {
    PendingEvent::new(
        EventReason::Recreated,
        format!(
            "StatefulSet {name} is recreated, its pods kept running and rolled to the new template one at a time: its volume claim templates or Service cannot change in place ({change})"
        ),
    )
}

/// A Redis pod the StatefulSet controller could not roll onto its claim, evicted.
pub fn redis_pod_evicted(pod: &str) -> PendingEvent {
    PendingEvent::new(
        EventReason::Evicted,
        format!(
            "evicted Redis pod {pod}: it has no volume for the StatefulSet's claim template, which the StatefulSet controller cannot add to a running pod; it comes back with its claim"
        ),
    )
}

/// A blocked cluster: a Warning the first time this Degraded reason and message
/// is reported for this generation; an invalid spec waits for a change, a
/// missing Secret is retried.
/// A paused cluster: an Event when it was not paused before; no requeue (removing the
/// annotation is a change, which reconciles it).
pub fn paused(previous: Option<&PushClusterStatus>) -> Plan {
    Plan {
        events: if status::says_paused(previous) {
            Vec::new()
        } else {
            vec![PendingEvent::new(
                EventReason::Paused,
                format!(
                    "{PAUSED_ANNOTATION} is \"true\": the operator changes nothing for this cluster until it is removed"
                ),
            )]
        },
        requeue: None,
    }
}

pub fn blocked(
    blocker: &Blocker,
    previous: Option<&PushClusterStatus>,
    generation: Option<i64>,
    new: &PushClusterStatus,
) -> Plan {
    let reason = match blocker {
        Blocker::InvalidSpec(_) => EventReason::InvalidSpec,
        Blocker::MissingSecrets(_) => EventReason::SecretMissing,
        Blocker::StepFailed { reason, .. } => match reason {
            // The apply step published its Event already (naming the object); the
            // error's backoff retries.
            EventReason::ApplyFailed => {
                return Plan {
                    events: Vec::new(),
                    requeue: None,
                };
            }
            other => *other,
        },
    };
    let message = degraded(new).map(|c| c.message.clone()).unwrap_or_default();
    // The Degraded condition says which generation it was reported for (the status's
    // observedGeneration stays at the last applied one).
    let repeat = previous.is_some_and(|p| {
        degraded(p).is_some_and(|c| {
            c.observed_generation == generation
                && c.reason == reason.as_str()
                && c.message == message
        })
    });
    Plan {
        events: if repeat {
            Vec::new()
        } else {
            vec![PendingEvent::new(reason, message)]
        },
        requeue: match blocker {
            Blocker::MissingSecrets(_) => Some(MISSING_DEPENDENCY_RETRY),
            Blocker::InvalidSpec(_) | Blocker::StepFailed { .. } => None,
        },
    }
}

/// What the steps after the apply observed.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    pub previous: Option<&'a PushClusterStatus>,
    pub generation: Option<i64>,
    pub new: &'a PushClusterStatus,
    pub gateway_api_missing: bool,
    /// The autoscaler's step period, when it runs.
    pub autoscale_every: Option<Duration>,
    /// When a queued operator-caused rollout asks for its turn again.
    pub rollout_retry: Option<Duration>,
    /// Redis pods still wait to be moved onto their volume claims.
    pub redis_pods_moving: bool,
}

/// Events after the status write (pods lost; a generation applied) and the requeue.
pub fn applied(a: Applied<'_>) -> Plan {
    let mut events = Vec::new();
    if status::says_paused(a.previous) {
        events.push(PendingEvent::new(
            EventReason::Resumed,
            format!("{PAUSED_ANNOTATION} removed: reconciling again"),
        ));
    }
    let pods_lost = |s: &PushClusterStatus| {
        degraded(s)
            .filter(|c| c.reason == EventReason::PodsUnavailable.as_str())
            .cloned()
    };
    if let Some(lost) = pods_lost(a.new)
        && a.previous.and_then(pods_lost).is_none()
    {
        events.push(PendingEvent::new(
            EventReason::PodsUnavailable,
            lost.message,
        ));
    }
    let previous_generation = a.previous.and_then(|s| s.observed_generation);
    if previous_generation != a.generation {
        let reason = if previous_generation.is_none() {
            EventReason::Created
        } else {
            EventReason::Updated
        };
        let note = format!("applied generation {}", a.generation.unwrap_or_default());
        events.push(PendingEvent::new(reason, note));
    }
    let unsettled = a.new.conditions.iter().any(|c| {
        (c.type_ == status::PROGRESSING || c.type_ == status::DEGRADED) && c.status == "True"
    });
    let mut requeue = if unsettled { PROGRESS_RESYNC } else { RESYNC };
    let redis_down = a
        .new
        .conditions
        .iter()
        .any(|c| c.type_ == status::REDIS_READY && c.status == "False");
    if redis_down {
        requeue = requeue.min(REDIS_DOWN_RESYNC);
    }
    if a.gateway_api_missing {
        requeue = requeue.min(MISSING_DEPENDENCY_RETRY);
    }
    let exposure = |s: &PushClusterStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == status::EXPOSURE_READY)
            .cloned()
    };
    if let Some(now) = exposure(a.new).filter(|c| c.status == "False") {
        // A controller admitting the object, or the CRDs upgraded to the experimental
        // channel, is seen within seconds (missing CRDs have their own retry).
        let pending = [
            status::AWAITING_CONTROLLER,
            status::ROUTE_NOT_ACCEPTED,
            status::SESSION_PERSISTENCE_UNSUPPORTED,
        ];
        if pending.contains(&now.reason.as_str()) {
            requeue = requeue.min(EXPOSURE_PENDING_RESYNC);
        }
        let before = a.previous.and_then(exposure).map(|c| c.reason);
        if now.reason == status::SESSION_PERSISTENCE_UNSUPPORTED
            && before.as_deref() != Some(now.reason.as_str())
        {
            events.push(PendingEvent::new(
                EventReason::SessionPersistenceUnsupported,
                now.message,
            ));
        }
    }
    if a.redis_pods_moving {
        requeue = requeue.min(REDIS_VOLUME_RESYNC);
    }
    for every in [a.autoscale_every, a.rollout_retry].into_iter().flatten() {
        requeue = requeue.min(every);
    }
    Plan {
        events,
        requeue: Some(requeue),
    }
}

fn degraded(
    s: &PushClusterStatus,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.true_condition(status::DEGRADED)
}

/// The exposure, in the words of the ExposureReady condition.
pub fn exposure_summary(vc: &ValidatedCluster) -> String {
    let exposure = &vc.spec.exposure;
    if exposure.gateway.is_some() {
        format!(
            "HTTPRoute {} with cookie session persistence",
            vc.names.server
        )
    } else if let Some(ingress) = &exposure.ingress {
        format!(
            "Ingress {} ({:?} {:?} affinity)",
            vc.names.server, ingress.controller, ingress.affinity
        )
    } else {
        format!("Service {} with ClientIP session affinity", vc.names.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_rolling_until_the_controller_settled_every_pod() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let meta = |generation| ObjectMeta {
            generation: Some(generation),
            ..Default::default()
        };
        let settled = serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "a", "updateRevision": "a"});
        assert!(!statefulset_rolling(&meta(2), Some(&settled)));
        assert!(
            statefulset_rolling(&meta(3), Some(&settled)),
            "new spec not seen yet"
        );
        assert!(statefulset_rolling(&meta(2), None), "no status yet");
        let mut unready = settled.clone();
        unready["readyReplicas"] = serde_json::json!(1);
        assert!(
            !statefulset_rolling(&meta(2), Some(&unready)),
            "readiness alone"
        );
        for (field, value) in [
            ("updatedReplicas", serde_json::json!(2)),
            ("updateRevision", serde_json::json!("b")),
        ] {
            let mut status = settled.clone();
            status[field] = value;
            assert!(statefulset_rolling(&meta(2), Some(&status)), "{field}");
        }
    }

    #[test]
    fn immutable_change_sees_claim_templates_and_service_but_not_server_defaults() {
        let claim = |size: &str| {
            serde_json::json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}}}})
        };
        let sts = |claims: serde_json::Value| {
            serde_json::json!({"spec": {"serviceName": "chat-redis", "volumeClaimTemplates": claims,
                "template": {"spec": {"containers": []}}}})
        };
        let plain = serde_json::json!({"spec": {"serviceName": "chat-redis"}});
        assert!(immutable_change(&plain, &sts(serde_json::json!([claim("1Gi")]))).is_some());
        assert!(immutable_change(&sts(serde_json::json!([claim("1Gi")])), &plain).is_some());
        assert!(
            immutable_change(
                &sts(serde_json::json!([claim("1Gi")])),
                &sts(serde_json::json!([claim("2Gi")]))
            )
            .is_some()
        );
        // As stored: the server adds volumeMode, a status and a new template; none counts.
        let mut stored = sts(serde_json::json!([claim("1Gi")]));
        stored["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = "Filesystem".into();
        stored["spec"]["volumeClaimTemplates"][0]["status"] =
            serde_json::json!({"phase": "Pending"});
        stored["spec"]["template"]["spec"]["containers"] = serde_json::json!([{"name": "redis"}]);
        assert_eq!(
            immutable_change(&stored, &sts(serde_json::json!([claim("1Gi")]))),
            None
        );
        assert_eq!(immutable_change(&plain, &plain), None);
    }
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn status(generation: i64, conditions: &[(&str, &str, &str, &str)]) -> PushClusterStatus {
        PushClusterStatus {
            observed_generation: Some(generation),
            conditions: conditions
                .iter()
                .map(|(type_, status, reason, message)| Condition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: reason.to_string(),
                    message: message.to_string(),
                    observed_generation: Some(generation),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                })
                .collect(),
            ..PushClusterStatus::default()
        }
    }

    fn reasons(plan: &Plan) -> Vec<EventReason> {
        plan.events.iter().map(|e| e.reason).collect()
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cases: &[(&str, u32, u64)] = &[
            ("first failure", 1, 5),
            ("second", 2, 10),
            ("third", 3, 20),
            ("capped", 10, 300),
            ("huge count does not overflow", u32::MAX, 300),
        ];
        for (case, failures, secs) in cases {
            assert_eq!(
                backoff(*failures),
                Duration::from_secs(*secs),
                "case {case:?}"
            );
        }
    }

    #[test]
    fn a_blocker_is_reported_once_per_generation_and_reason() {
        let invalid = Blocker::InvalidSpec("spec.x: bad".into());
        let reported = status(2, &[("Degraded", "True", "InvalidSpec", "spec.x: bad")]);
        // (case, previous, generation, expected events, expected requeue)
        let cases: Vec<(&str, Option<&PushClusterStatus>, i64, Vec<EventReason>)> = vec![
            ("first time", None, 2, vec![EventReason::InvalidSpec]),
            ("same generation, same message", Some(&reported), 2, vec![]),
            (
                "a new generation",
                Some(&reported),
                3,
                vec![EventReason::InvalidSpec],
            ),
        ];
        for (case, previous, generation, want) in cases {
            let plan = blocked(&invalid, previous, Some(generation), &reported);
            assert_eq!(reasons(&plan), want, "case {case:?}");
            assert_eq!(
                plan.requeue, None,
                "case {case:?}: an invalid spec waits for a change"
            );
        }
        let missing = Blocker::MissingSecrets(vec!["jwt/key".into()]);
        let new = status(2, &[("Degraded", "True", "SecretMissing", "jwt/key")]);
        let plan = blocked(&missing, None, Some(2), &new);
        assert_eq!(reasons(&plan), vec![EventReason::SecretMissing]);
        assert_eq!(plan.requeue, Some(MISSING_DEPENDENCY_RETRY));
    }

    #[test]
    fn after_the_apply_events_and_requeue() {
        let healthy = status(1, &[("Progressing", "False", "Complete", "")]);
        let rolling = status(2, &[("Progressing", "True", "RollingOut", "")]);
        let lost = status(
            1,
            &[("Degraded", "True", "PodsUnavailable", "2/3 pods ready")],
        );
        let unreachable = status(
            1,
            &[(
                "RedisReady",
                "False",
                "Unreachable",
                "no push pod reaches Redis",
            )],
        );
        // (case, previous, generation, new, gateway missing, autoscaler, events, requeue)
        type Case<'a> = (
            &'a str,
            Option<&'a PushClusterStatus>,
            i64,
            &'a PushClusterStatus,
            bool,
            Option<Duration>,
            Vec<EventReason>,
            Duration,
        );
        let cases: Vec<Case> = vec![
            (
                "created",
                None,
                1,
                &healthy,
                false,
                None,
                vec![EventReason::Created],
                RESYNC,
            ),
            (
                "unchanged",
                Some(&healthy),
                1,
                &healthy,
                false,
                None,
                vec![],
                RESYNC,
            ),
            (
                "updated, rolling",
                Some(&healthy),
                2,
                &rolling,
                false,
                None,
                vec![EventReason::Updated],
                PROGRESS_RESYNC,
            ),
            (
                "pods lost",
                Some(&healthy),
                1,
                &lost,
                false,
                None,
                vec![EventReason::PodsUnavailable],
                PROGRESS_RESYNC,
            ),
            (
                "still lost: no second warning",
                Some(&lost),
                1,
                &lost,
                false,
                None,
                vec![],
                PROGRESS_RESYNC,
            ),
            (
                "redis unreachable: looked at again in seconds",
                Some(&healthy),
                1,
                &unreachable,
                false,
                None,
                vec![],
                REDIS_DOWN_RESYNC,
            ),
            (
                "gateway api missing",
                Some(&healthy),
                1,
                &healthy,
                true,
                None,
                vec![],
                MISSING_DEPENDENCY_RETRY,
            ),
            (
                "autoscaler steps sooner",
                Some(&healthy),
                1,
                &healthy,
                false,
                Some(Duration::from_secs(15)),
                vec![],
                Duration::from_secs(15),
            ),
        ];
        for (
            case,
            previous,
            generation,
            new,
            gateway_api_missing,
            autoscale_every,
            events,
            requeue,
        ) in cases
        {
            let plan = applied(Applied {
                previous,
                generation: Some(generation),
                new,
                gateway_api_missing,
                autoscale_every,
                rollout_retry: None,
                redis_pods_moving: false,
            });
            assert_eq!(reasons(&plan), events, "case {case:?}");
            assert_eq!(plan.requeue, Some(requeue), "case {case:?}");
        }
    }

    #[test]
    fn step_events_only_when_something_happened() {
        assert_eq!(secrets_created(&[]), None);
        assert_eq!(
            secrets_created(&["a".into(), "b".into()]).map(|e| e.note),
            Some("generated Secret(s) a, b".to_string())
        );
        assert_eq!(scale_in(2, &[]), None);
        assert!(scale_in(1, &["chat-b".into()]).is_some_and(|e| e.note.ends_with(": chat-b")));
        assert_eq!(pruned(&[]), None);
        assert_eq!(
            pruned(&["Ingress/chat".into()]).map(|e| e.reason),
            Some(EventReason::Deleted)
        );
    }
}
