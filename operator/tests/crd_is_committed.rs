//! `crds/pushcluster.yaml` must equal `push-operator crd` (the code is the source).

use kube::CustomResourceExt;
use push_operator::resources::PushCluster;

#[test]
fn committed_crd_matches_the_code() {
    let generated = serde_yaml_ng::to_string(&PushCluster::crd()).expect("CRD serializes");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/pushcluster.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/pushcluster.yaml exists");
    assert!(
        committed == generated,
        "crds/pushcluster.yaml is stale: regenerate it with `cargo run -p push-operator -- crd > crds/pushcluster.yaml`"
    );
}

#[test]
fn crd_declares_subresources_and_printer_columns() {
    let crd = PushCluster::crd();
    let version = &crd.spec.versions[0];
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some(), "status subresource");
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for want in ["Desired", "Ready", "Endpoint", "Status", "Age"] {
        assert!(
            columns.contains(&want),
            "{want} column missing from {columns:?}"
        );
    }
}
