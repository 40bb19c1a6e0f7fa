//! The operator's own Prometheus metrics: reconcile runs, failures by error
//! label, reconcile duration, whether this replica leads, and each watched
//! PushCluster's Ready/Degraded/paused state (read from the controller's cache at
//! every scrape, so a deleted cluster's series go with it).

use crate::resources::PushCluster;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<StepLabels, Counter>,
    pub duration: Histogram,
    /// 1 while this replica leads (its controllers act), 0 on a standby.
    pub leader: Gauge,
    /// The controllers' caches of PushClusters, filled once they run.
    pub clusters: Arc<ClusterStates>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub pushcluster: String,
}

/// Each watched PushCluster's conditions as gauges, from the controllers' caches.
#[derive(Debug, Default)]
pub struct ClusterStates {
    stores: RwLock<Vec<Store<PushCluster>>>,
}

impl ClusterStates {
    pub fn watch(&self, store: Store<PushCluster>) {
        match self.stores.write() {
            Ok(mut stores) => stores.push(store),
            Err(poisoned) => poisoned.into_inner().push(store),
        }
    }

    /// Every cached PushCluster's state.
    fn states(&self) -> Vec<ClusterState> {
        let stores = match self.stores.read() {
            Ok(stores) => stores.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let is_true = |pc: &PushCluster, type_: &str| {
            pc.status
                .as_ref()
                .is_some_and(|s| s.true_condition(type_).is_some())
        };
        stores
            .iter()
            .flat_map(|store| store.state())
            .map(|pc| {
                let labels = ClusterLabels {
                    namespace: pc.namespace().unwrap_or_default(),
                    pushcluster: pc.name_any(),
                };
                ClusterState {
                    ready: is_true(&pc, "Ready"),
                    degraded: is_true(&pc, "Degraded"),
                    paused: pc.pause_requested(),
                    labels,
                }
            })
            .collect()
    }
}

/// One PushCluster as its gauges say it.
struct ClusterState {
    labels: ClusterLabels,
    ready: bool,
    degraded: bool,
    paused: bool,
}

/// (name, help, value) of each per-cluster gauge.
type ClusterGauge = (&'static str, &'static str, fn(&ClusterState) -> bool);

impl Collector for ClusterStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let states = self.states();
        let gauges: [ClusterGauge; 3] = [
            (
                "cluster_ready",
                "1 while the PushCluster's Ready condition is True",
                |s| s.ready,
            ),
            (
                "cluster_degraded",
                "1 while the PushCluster's Degraded condition is True",
                |s| s.degraded,
            ),
            (
                "cluster_paused",
                "1 while the PushCluster carries the pause annotation",
                |s| s.paused,
            ),
        ];
        for (name, help, value) in gauges {
            let family = Family::<ClusterLabels, Gauge>::default();
            for state in &states {
                family
                    .get_or_create(&state.labels)
                    .set(i64::from(value(state)));
            }
            let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
            family.encode(metric)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pushcluster_operator");
        let reconciles = Counter::default();
        let failures = Family::<StepLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register("reconcile_runs", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by the step that failed",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration in seconds",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (acts on PushClusters), 0 on a standby",
            leader.clone(),
        );
        let clusters = Arc::new(ClusterStates::default());
        registry.register_collector(Box::new(clusters.clone()));
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            clusters,
        }
    }
}

impl Metrics {
    /// Count a run; the returned guard records the duration when dropped.
    pub fn reconcile_started(&self) -> DurationGuard<'_> {
        self.reconciles.inc();
        DurationGuard {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    /// `step`: which reconcile step failed (`ReconcileError::step`).
    pub fn reconcile_failed(&self, step: &str) {
        self.failures
            .get_or_create(&StepLabels {
                step: step.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records the elapsed time into the duration histogram on drop.
pub struct DurationGuard<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for DurationGuard<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::PAUSED_ANNOTATION;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    fn cluster(
        namespace: &str,
        name: &str,
        conditions: &[(&str, &str)],
        paused: bool,
    ) -> PushCluster {
        let conditions: Vec<serde_json::Value> = conditions
            .iter()
            .map(|(t, s)| {
                serde_json::json!({"type": t, "status": s, "reason": "R", "message": "",
                                   "lastTransitionTime": "2026-12-06T00:00:00Z"})
            })
            .collect();
        let annotations = if paused {
            serde_json::json!({PAUSED_ANNOTATION: "true"})
        } else {
            serde_json::json!({})
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {}, "status": {"conditions": conditions}}))
        .expect("a PushCluster")
    }

    /// The chart's Grafana dashboard charts only series this operator exposes.
    #[test]
    fn the_dashboard_charts_operator_metrics_that_exist() {
        let dashboard = include_str!("../../charts/pushcluster-operator/files/dashboard.json");
        // Every family with a series (an empty family is not exposed at all).
        let m = Metrics::default();
        m.reconcile_failed("apply");
        drop(m.reconcile_started());
        let mut writer: Writer<PushCluster> = Writer::default();
        m.clusters.watch(writer.as_reader());
        writer.apply_watcher_event(&watcher::Event::Apply(cluster("apps", "chat", &[], false)));
        let exposed = m.encode();
        let mut charted = 0;
        for (at, _) in dashboard.match_indices("pushcluster_operator_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                exposed.contains(&format!("# TYPE {family} ")),
                "{name} is charted but not exposed:\n{exposed}"
            );
            charted += 1;
        }
        assert!(charted >= 7, "the operator panels are there: {charted}");
    }

    /// Each cached PushCluster's conditions, read at scrape time: a cluster gone from
    /// the cache has no series any more.
    #[test]
    fn cluster_conditions_are_gauges_of_the_cached_clusters() {
        let m = Metrics::default();
        let mut writer: Writer<PushCluster> = Writer::default();
        m.clusters.watch(writer.as_reader());
        let ready = cluster(
            "apps",
            "chat",
            &[("Ready", "True"), ("Degraded", "False")],
            false,
        );
        let refused = cluster(
            "apps",
            "refused",
            &[("Ready", "False"), ("Degraded", "True")],
            true,
        );
        writer.apply_watcher_event(&watcher::Event::Apply(ready.clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(refused.clone()));
        let text = m.encode();
        for line in [
            "pushcluster_operator_cluster_ready{namespace=\"apps\",pushcluster=\"chat\"} 1",
            "pushcluster_operator_cluster_degraded{namespace=\"apps\",pushcluster=\"chat\"} 0",
            "pushcluster_operator_cluster_paused{namespace=\"apps\",pushcluster=\"chat\"} 0",
            "pushcluster_operator_cluster_ready{namespace=\"apps\",pushcluster=\"refused\"} 0",
            "pushcluster_operator_cluster_degraded{namespace=\"apps\",pushcluster=\"refused\"} 1",
            "pushcluster_operator_cluster_paused{namespace=\"apps\",pushcluster=\"refused\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        writer.apply_watcher_event(&watcher::Event::Delete(refused));
        assert!(!m.encode().contains("pushcluster=\"refused\""));
    }

    #[test]
    fn counts_runs_failures_and_durations() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconcile_failed("apply");
        let text = m.encode();
        assert!(
            text.contains("pushcluster_operator_reconcile_runs_total 1"),
            "{text}"
        );
        assert!(
            text.contains("pushcluster_operator_reconcile_failures_total{step=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pushcluster_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("pushcluster_operator_leader 0"), "{text}");
        m.leader.set(1);
        assert!(m.encode().contains("pushcluster_operator_leader 1"));
    }
}
