//! The reconcile pipeline, one module per step:
//! [`dereference`] (the Secrets a cluster depends on) → validate
//! ([`crate::validate`]: an invalid spec gets a Degraded condition and waits for
//! a change) → build ([`crate::objects`], pure) + [`apply`] (server-side apply,
//! scale-in marks right before the Deployment) → [`prune`] (owned objects no
//! longer wanted) → [`status`] (pure). [`plan`] decides the Events and the
//! requeue; [`reconcile`] is the shell that runs the steps in order; a failure
//! names its step ([`error`]), which is the failure metric's label.
//!
//! Extension points:
//! - autoscaling: [`Context::autoscaler`] is stepped after the apply (measures
//!   always, decides when `spec.autoscaling.enabled`), and the apply step marks
//!   the least-loaded pods before a Deployment apply that lowers the replicas.
//! - permissions: every API request must be covered by [`rbac::PERMISSIONS`]
//!   (the mock-API tests fail otherwise).

pub mod apply;
pub mod context;
pub mod dereference;
pub mod error;
pub mod exposure_check;
pub mod plan;
pub mod prune;
pub mod rbac;
pub mod reconcile;
pub mod redis_pods;
pub mod redis_volumes;
pub mod rollout;
pub mod status;

pub use context::Context;
pub use error::ReconcileError;
pub use plan::backoff;
pub use reconcile::{error_policy, reconcile};

#[cfg(test)]
mod tests;
