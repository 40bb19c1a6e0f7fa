//! The operator's own Prometheus metrics: reconcile runs, failures by error
//! label, reconcile duration, whether this replica leads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
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
