//! Mock-API tests of the autoscaler step: measure, decide, write replicas
//! through the scale subresource, refuse to fight an HPA. Pods' /metrics are
//! real HTTP servers on loopback addresses (127.0.0.x, one port), standing in
//! for pod IPs.
use super::*;
use crate::autoscale::fixtures::api::*;
use crate::autoscale::fixtures::pods::fake_pods;

/// One autoscaler step against the scripted API server, which must see exactly `calls`.
async fn step_against(port: u16, pc: &PushCluster, calls: Vec<Call>) -> StepReport {
    let (client, handle) = mock_client();
    let server = tokio::spawn(serve_calls(handle, calls));
    let report = Autoscaler::new(port)
        .step(&client, pc, SELECTOR)
        .await
        .expect("step");
    server.await.expect("api server");
    report
}

#[tokio::test]
async fn step_scales_up_through_the_scale_subresource() {
    let (port, ips) = fake_pods(&[300, 290]).await;
    let pc = cluster(
        "{enabled: true, minReplicas: 1, maxReplicas: 10, targetConnectionsPerPod: 100}",
        2,
    );
    let calls = vec![
        pods_list(ready_pods(&ips)),
        hpa_list(vec![]),
        scale_patch(6),
    ];
    let report = step_against(port, &pc, calls).await;
    assert_eq!(report.connections, Some(590));
    assert_eq!(report.status.recommended_replicas, Some(6));
    assert_eq!(
        (report.status.pods_measured, report.status.pods_unmeasured),
        (2, 0)
    );
    assert!(report.status.last_scale_time.is_some());
    let event = report.event.expect("an event for the scale-up");
    assert_eq!(event.reason, EventReason::ScaledUp);
    assert!(event.note.starts_with("scale up 2 -> 6"), "{}", event.note);
}

#[tokio::test]
async fn step_does_not_fight_an_hpa_targeting_the_cluster() {
    let (port, ips) = fake_pods(&[300, 290]).await;
    let pc = cluster("{enabled: true, targetConnectionsPerPod: 100}", 2);
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "keda-hpa-chat", "namespace": "apps" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster", "name": "chat" },
            "maxReplicas": 10
        }
    });
    let calls = vec![
        pods_list(ready_pods(&ips)),
        // No PATCH of the scale subresource may follow.
        hpa_list(vec![hpa]),
    ];
    let report = step_against(port, &pc, calls).await;
    let event = report.event.expect("a warning");
    assert_eq!(event.reason, EventReason::ExternalScalerConflict);
    assert!(event.note.contains("keda-hpa-chat"), "{}", event.note);
    assert_eq!(report.status.recommended_replicas, Some(6));
    assert!(report.status.last_scale_time.is_none());
}

#[tokio::test]
async fn step_with_autoscaling_off_only_measures() {
    let (port, ips) = fake_pods(&[7, 5]).await;
    let pc = cluster("{enabled: false}", 2);
    let calls = vec![pods_list(ready_pods(&ips))];
    let report = step_against(port, &pc, calls).await;
    assert_eq!(report.connections, Some(12));
    assert_eq!(report.plan, None);
    assert_eq!(report.event, None);
}

#[test]
fn external_scaler_matches_kind_group_and_name() {
    let hpa = |api_version: &str, kind: &str, name: &str| -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": { "name": format!("h-{kind}-{name}") },
            "spec": { "scaleTargetRef": { "apiVersion": api_version, "kind": kind, "name": name }, "maxReplicas": 3 }
        }))
        .expect("hpa")
    };
    let cases = [
        (
            "targets this PushCluster",
            hpa("pushcluster.dev/v1alpha1", "PushCluster", "chat"),
            true,
        ),
        (
            "another PushCluster",
            hpa("pushcluster.dev/v1alpha1", "PushCluster", "other"),
            false,
        ),
        (
            "a Deployment of the same name",
            hpa("apps/v1", "Deployment", "chat"),
            false,
        ),
        (
            "same kind in another group",
            hpa("example.com/v1", "PushCluster", "chat"),
            false,
        ),
    ];
    for (case, h, want) in cases {
        assert_eq!(
            external_scaler(&[h], "chat").is_some(),
            want,
            "case: {case}"
        );
    }
}

#[test]
fn decisions_are_at_most_one_per_gap() {
    let t0 = Instant::now();
    let cases = [
        ("never decided: due", None, t0, true),
        (
            "just decided: not due",
            Some(t0),
            t0 + Duration::from_secs(1),
            false,
        ),
        ("one gap later: due", Some(t0), t0 + MIN_DECISION_GAP, true),
    ];
    for (case, last, now, want) in cases {
        assert_eq!(decision_due(last, now), want, "case: {case}");
    }
}

#[tokio::test]
async fn a_second_reconcile_within_the_gap_measures_but_does_not_decide() {
    let (port, ips) = fake_pods(&[10, 10]).await;
    let (client, handle) = mock_client();
    let pc = cluster(
        "{enabled: true, targetConnectionsPerPod: 100, scaleDownStabilizationSeconds: 0}",
        2,
    );
    let calls = vec![
        pods_list(ready_pods(&ips)),
        hpa_list(vec![]),
        scale_patch(1),
        // The reconcile the replica change triggers: pods only, no second scale-in.
        pods_list(ready_pods(&ips)),
    ];
    let server = tokio::spawn(serve_calls(handle, calls));
    let autoscaler = Autoscaler::new(port);
    let first = autoscaler
        .step(&client, &pc, SELECTOR)
        .await
        .expect("first step");
    assert_eq!(first.plan.map(|p| p.replicas), Some(1));
    let mut again = pc.clone();
    again.spec.replicas = 2; // as if the watch event raced the write: still 2
    let second = autoscaler
        .step(&client, &again, SELECTOR)
        .await
        .expect("second step");
    server.await.expect("api server");
    assert_eq!(second.plan, None);
    assert_eq!(second.connections, Some(20));
}

#[tokio::test]
async fn a_hold_reports_a_changed_recommendation_once() {
    for (case, previous, want_event) in [
        ("first recommendation: an event", None, true),
        ("same as the status shows: none", Some(2), false),
    ] {
        let (port, ips) = fake_pods(&[100, 104]).await;
        let mut pc = cluster("{enabled: true, targetConnectionsPerPod: 100}", 2);
        pc.status = Some(crate::resources::PushClusterStatus {
            autoscaler: Some(AutoscalerStatus {
                recommended_replicas: previous,
                ..Default::default()
            }),
            ..Default::default()
        });
        let calls = vec![pods_list(ready_pods(&ips)), hpa_list(vec![])];
        let report = step_against(port, &pc, calls).await;
        assert_eq!(
            report.plan.as_ref().map(|p| p.direction),
            Some(Direction::Hold),
            "case: {case}"
        );
        match report.event {
            Some(e) if want_event => {
                assert_eq!(e.reason, EventReason::RecommendationChanged, "case: {case}");
                assert!(
                    e.note.contains("within tolerance"),
                    "case: {case}: {}",
                    e.note
                );
            }
            None if !want_event => {}
            other => panic!("case: {case}: event {other:?}"),
        }
    }
}

mod hook;
