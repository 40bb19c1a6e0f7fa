//! Every Event the operator emits: its reason (one enum, so a reason is spelt
//! once and its type — Normal or Warning — is decided once) and the one builder
//! of kube's [`Event`]. The controller and the autoscaler decide which Events a
//! step is worth as [`PendingEvent`]s; only their shells publish them.

use kube::runtime::events::{Event, EventType};

/// Kubernetes limits an Event note to 1 kB.
const NOTE_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// First reconcile of a PushCluster applied.
    Created,
    /// A new generation of the spec applied.
    Updated,
    /// The operator generated a Secret (API token, Redis password).
    SecretCreated,
    /// Owned objects the spec no longer wants were deleted.
    Deleted,
    /// The spec failed validation (the note names the field).
    InvalidSpec,
    /// A referenced Secret or key does not exist.
    SecretMissing,
    /// Pods were all ready and some no longer are.
    PodsUnavailable,
    /// The API server refused or failed an apply.
    ApplyFailed,
    /// Another step failed against the API server (reading Secrets, pruning).
    ReconcileFailed,
    /// An owned object whose change the API server refuses in place was recreated.
    Recreated,
    /// Replicas go down: the least-loaded pods were marked to go first.
    ScaleIn,
    /// Marking the pods to remove failed; replicas are not lowered yet.
    ScaleInDeferred,
    ScaledUp,
    ScaledDown,
    /// No pod answered its connection gauge.
    MetricsUnavailable,
    /// The recommendation moved, a window or the tolerance holds the replicas.
    RecommendationChanged,
    /// An HPA targets the PushCluster while spec.autoscaling is enabled.
    ExternalScalerConflict,
    /// The pause annotation is set: the operator changes nothing for this cluster.
    Paused,
    /// The pause annotation is gone: reconciling again.
    Resumed,
    /// After a scale-out, pods above their share were asked to move the surplus.
    Rebalanced,
    /// A Redis pod without its volume claim was evicted so it comes back with it.
    Evicted,
    /// The HTTPRoute CRD has no sessionPersistence (standard channel): no route applied.
    SessionPersistenceUnsupported,
}

impl EventReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Updated => "Updated",
            Self::SecretCreated => "SecretCreated",
            Self::Deleted => "Deleted",
            Self::InvalidSpec => "InvalidSpec",
            Self::SecretMissing => "SecretMissing",
            Self::PodsUnavailable => "PodsUnavailable",
            Self::Recreated => "Recreated",
            Self::ApplyFailed => "ApplyFailed",
            Self::ReconcileFailed => "ReconcileFailed",
            Self::ScaleIn => "ScaleIn",
            Self::ScaleInDeferred => "ScaleInDeferred",
            Self::ScaledUp => "ScaledUp",
            Self::ScaledDown => "ScaledDown",
            Self::MetricsUnavailable => "MetricsUnavailable",
            Self::RecommendationChanged => "RecommendationChanged",
            Self::ExternalScalerConflict => "ExternalScalerConflict",
            Self::Paused => "Paused",
            Self::Resumed => "Resumed",
            Self::Rebalanced => "Rebalanced",
            Self::Evicted => "Evicted",
            Self::SessionPersistenceUnsupported => "SessionPersistenceUnsupported",
        }
    }

    /// Warning when a person should act or the cluster runs below its spec.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Self::InvalidSpec
                | Self::SecretMissing
                | Self::PodsUnavailable
                | Self::ApplyFailed
                | Self::ReconcileFailed
                | Self::ScaleInDeferred
                | Self::MetricsUnavailable
                | Self::ExternalScalerConflict
                | Self::SessionPersistenceUnsupported
        )
    }

    /// The Event's action: which loop of the operator acted.
    fn action(self) -> &'static str {
        match self {
            Self::ScaledUp
            | Self::ScaledDown
            | Self::MetricsUnavailable
            | Self::RecommendationChanged
            | Self::ExternalScalerConflict
            | Self::Rebalanced => "Autoscale",
            _ => "Reconcile",
        }
    }
}

/// An Event a step decided on, not yet published (kube's `Event` is neither
/// `Clone` nor `Debug`, so decisions carry this and tests compare it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub reason: EventReason,
    pub note: String,
}

impl PendingEvent {
    pub fn new(reason: EventReason, note: impl Into<String>) -> Self {
        Self {
            reason,
            note: note.into(),
        }
    }

    /// The one place a kube [`Event`] is built.
    pub fn to_event(&self) -> Event {
        Event {
            type_: if self.reason.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.as_str().to_string(),
            note: Some(self.note.chars().take(NOTE_LIMIT).collect()),
            action: self.reason.action().to_string(),
            secondary: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_action_and_note_limit() {
        // (reason, warning, action)
        let cases = [
            (EventReason::Created, false, "Reconcile"),
            (EventReason::PodsUnavailable, true, "Reconcile"),
            (EventReason::ScaleInDeferred, true, "Reconcile"),
            (EventReason::ScaledUp, false, "Autoscale"),
            (EventReason::ExternalScalerConflict, true, "Autoscale"),
        ];
        for (reason, warning, action) in cases {
            let event = PendingEvent::new(reason, "x".repeat(5000)).to_event();
            assert_eq!(event.type_ == EventType::Warning, warning, "{reason:?}");
            assert_eq!(event.action, action, "{reason:?}");
            assert_eq!(event.reason, reason.as_str());
            assert_eq!(event.note.map(|n| n.len()), Some(NOTE_LIMIT));
        }
    }
}
