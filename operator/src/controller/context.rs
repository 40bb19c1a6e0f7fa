//! What every reconcile shares: the API client, the Event recorder, metrics,
//! the autoscaler, and the consecutive-failure counts behind the backoff.

use crate::events::PendingEvent;
use crate::metrics::Metrics;
use crate::resources::PushCluster;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Connection autoscaler; `None` disables the step (tests, or no autoscaling wanted).
    pub autoscaler: Option<Arc<crate::autoscale::Autoscaler>>,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Operator-caused rollouts one cluster at a time; `None`: not queued (tests).
    pub rollouts: Option<super::rollout::RolloutGate>,
}

impl Context {
    pub fn new(
        client: Client,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        autoscaler: Option<Arc<crate::autoscale::Autoscaler>>,
    ) -> Self {
        let reporter = Reporter {
            controller: push_contract::kube::FIELD_MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            autoscaler,
            failures: Mutex::default(),
            rollouts: None,
        }
    }

    pub fn with_rollout_gate(mut self, gate: super::rollout::RolloutGate) -> Self {
        self.rollouts = Some(gate);
        self
    }

    /// Counts one more consecutive failure of `pc`; returns the count.
    pub fn failed(&self, pc: &PushCluster) -> u32 {
        self.failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key(pc)).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1)
    }

    pub fn succeeded(&self, pc: &PushCluster) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&key(pc));
        }
    }

    /// Publishes an Event about `pc`; a failure to publish is logged, never fatal.
    pub async fn publish(&self, pc: &PushCluster, event: &PendingEvent) {
        if let Err(e) = self
            .recorder
            .publish(&event.to_event(), &pc.object_ref(&()))
            .await
        {
            let reason = event.reason.as_str();
            tracing::warn!(cluster = %key(pc), error = %e, reason, "publishing an event failed");
        }
    }
}

/// `namespace/name`, for logs and the failure counts.
pub fn key(pc: &PushCluster) -> String {
    format!("{}/{}", pc.namespace().unwrap_or_default(), pc.name_any())
}
