//! Connection-count autoscaling.
//!
//! - [`decision`]: the pure, HPA-like decision (bounds, windows, tolerance,
//!   unmeasured pods, scale-in step) and the in-memory recommendation history.
//! - [`scrape`]: reading each ready pod's `push_connections` gauge, concurrently,
//!   with a bounded timeout.
//! - [`scale_in`]: choosing the least-loaded pods and marking them with
//!   `controller.kubernetes.io/pod-deletion-cost` before the replica count drops.
//! - [`local`]: the same decision over local mode's push-server processes.
//! - [`step`]: one step against the Kubernetes API (measure, decide, write
//!   replicas through the scale subresource, refuse to fight an HPA).
pub mod decision;
pub mod local;
pub mod scale_in;
pub mod scrape;
pub mod step;
#[cfg(test)]
pub(crate) mod test_api;
#[cfg(test)]
pub(crate) mod test_pods;

pub use decision::{Direction, History, Measurement, Plan, PodLoad, Policy, decide};
pub use step::{Autoscaler, STEP_INTERVAL, StepReport, prepare_scale_in};

/// Field manager of the autoscaler's writes (spec.replicas through the scale
/// subresource, pod-deletion-cost annotations), so managedFields show who set them.
pub const FIELD_MANAGER: &str = "pushcluster-autoscaler";

fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}
