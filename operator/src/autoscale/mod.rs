//! Connection-count autoscaling.
//!
//! - [`load`]: what a step measured (per pod, and the sum).
//! - [`decision`]: the pure, HPA-like decision (bounds, windows, tolerance,
//!   unmeasured pods, scale-in step) and the in-memory recommendation history.
//! - [`scrape`]: reading each ready pod's `push_connections` gauge, concurrently,
//!   with a bounded timeout.
//! - [`scale_in`]: choosing the least-loaded pods and marking them with
//!   `controller.kubernetes.io/pod-deletion-cost` before the replica count drops.
//! - [`rebalance`]: after a scale-out, which pods move how many clients to the others.
//! - [`step`]: one step against the Kubernetes API (measure, decide, write
//!   replicas through the scale subresource, refuse to fight an HPA).
pub mod decision;
pub mod field_manager;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod load;
pub mod rebalance;
pub mod scale_in;
pub mod scrape;
pub mod step;

pub use decision::{Direction, History, Plan, Policy, decide};
pub use field_manager::FIELD_MANAGER;
pub use load::{Measurement, PodLoad};
pub use step::{Autoscaler, STEP_INTERVAL, StepReport, prepare_scale_in};
