//! A failed reconcile says which step failed; the step is the metric label.
//! Validation is no failure (it is a status condition), and the builders are pure.

use super::apply::ApplyError;
use super::dereference::DereferenceError;
use super::prune::PruneError;
use crate::events::EventReason;

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

    /// The Degraded (and Event) reason of this failure: an apply's own (the scale-in
    /// hook runs inside it), or the other steps'.
    pub fn reason(&self) -> EventReason {
        match self {
            Self::Apply(_) => EventReason::ApplyFailed,
            _ => EventReason::ReconcileFailed,
        }
    }
}
