//! Connection-count autoscaling.
//!
//! - [`decision`]: the pure, HPA-like decision (bounds, windows, tolerance,
//!   unmeasured pods, scale-in step) and the in-memory recommendation history.
//! - [`scrape`]: reading each ready pod's `push_connections` gauge, concurrently,
//!   with a bounded timeout.
//! - [`scale_in`]: choosing the least-loaded pods and marking them with
//!   `controller.kubernetes.io/pod-deletion-cost` before the replica count drops.
pub mod decision;
pub mod scale_in;
pub mod scrape;

pub use decision::{Direction, History, Measurement, Plan, PodLoad, Policy, decide};
