//! Who the autoscaler's writes are from.

/// Field manager of the autoscaler's writes (spec.replicas through the scale
/// subresource, pod-deletion-cost annotations), so managedFields show who set them.
pub const FIELD_MANAGER: &str = "pushcluster-autoscaler";

pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}
