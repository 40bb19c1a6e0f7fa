//! A failed reconcile says which step failed; the step is the metric label.
//! Validation is no failure (it is a status condition), and the builders are pure.

use super::apply::ApplyError;
use super::dereference::DereferenceError;
use super::prune::PruneError;
use crate::events::EventReason;

/// The cause the API server gives when it refuses new objects in a namespace being
/// deleted (`metav1.NamespaceTerminatingCause`).
const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Prune(#[from] PruneError),
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
}

impl ReconcileError {
    /// Stable, low-cardinality label: the step that failed.
    pub fn step(&self) -> &'static str {
        match self {
            Self::Dereference(_) => "dereference",
            Self::Apply(ApplyError::ScaleIn(_)) => "scale_in",
            Self::Apply(_) => "apply",
            Self::Prune(_) => "prune",
            Self::Status(_) => "status",
        }
    }

    /// Whether the API server refused because the PushCluster's namespace is being
    /// deleted (the cause `NamespaceTerminating` of a 403: nothing new may be created
    /// there): the cluster is going away with its namespace, which is no failure to
    /// report, count or retry.
    pub fn namespace_terminating(&self) -> bool {
        let source = match self {
            Self::Dereference(DereferenceError(e))
            | Self::Prune(PruneError(e))
            | Self::Status(e) => e,
            Self::Apply(
                ApplyError::Apply { source, .. }
                | ApplyError::ScaleIn(source)
                | ApplyError::VolumeRoll(source)
                | ApplyError::Discovery(source),
            ) => source,
            Self::Apply(ApplyError::Serialize { .. } | ApplyError::RecreateTimedOut { .. }) => {
                return false;
            }
        };
        let kube::Error::Api(status) = source else {
            return false;
        };
        status.is_forbidden()
            && status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == NAMESPACE_TERMINATING))
    }

    /// The Degraded (and Event) reason of this failure: an apply's own (the scale-in
    /// hook runs inside it), or the other steps'.
    pub fn reason(&self) -> EventReason {
        match self {
            Self::Apply(_) => EventReason::ApplyFailed,
            _ => EventReason::ReconcileFailed,
        }
    }
}
