//! Local mode's autoscaler: the same [`decide`] over the nodes a local
//! supervisor runs. Each step scrapes every ready node's admin port, decides,
//! and asks the supervisor for the new node count, naming the least-loaded
//! nodes to drain first on scale-in. Decisions are logged (local mode has no
//! Events): `push_contract::local_mode::STEP_*` names the line and its fields.

use crate::autoscale::decision::{Direction, History, Plan, Policy, decide};
use crate::autoscale::scrape::{
    SCRAPE_TIMEOUT, ScrapeTarget, client as scrape_client, ready_loads, scrape_all,
};
use crate::resources::AutoscalingSpec;
use push_contract::local_mode::{
    PHASE_DRAINING, PHASE_READY, STEP_CONNECTIONS, STEP_INTERVAL_MS, STEP_MEASURED, STEP_MESSAGE,
    STEP_RECOMMENDED, STEP_REPLICAS, STEP_UNMEASURED, STEP_VICTIMS,
};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Step period of local mode: loopback scrapes are cheap, and a short period
/// lets the configured windows, not the period, set the reaction time.
pub const LOCAL_STEP_INTERVAL: Duration = Duration::from_millis(STEP_INTERVAL_MS);

/// One node as the autoscaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    pub admin: SocketAddr,
    pub ready: bool,
    /// Leaving: neither counted as a replica nor scraped.
    pub draining: bool,
}

/// What the autoscaler needs from a local supervisor.
pub trait LocalNodes {
    fn nodes(&self) -> Vec<LocalNode>;
    /// Run `replicas` nodes; on scale-in drain `drain_first` first. False when
    /// the supervisor is gone.
    fn scale(&self, replicas: usize, drain_first: Vec<String>)
    -> impl Future<Output = bool> + Send;
}

/// One step: measure, decide, record, and ask for the new count. `None` when
/// there is nothing to decide on (no nodes).
pub async fn step<N: LocalNodes>(
    policy: &Policy,
    history: &mut History,
    nodes: &N,
    http: &reqwest::Client,
    now: Instant,
) -> Option<(Plan, bool)> {
    let all = nodes.nodes();
    let current = i32::try_from(all.iter().filter(|n| !n.draining).count()).ok()?;
    if current == 0 {
        return None;
    }
    let targets: Vec<ScrapeTarget> = all
        .iter()
        .filter(|n| n.ready && !n.draining)
        .map(|n| ScrapeTarget::new(&n.name, n.admin))
        .collect();
    let loads = ready_loads(&scrape_all(http, &targets, SCRAPE_TIMEOUT).await);
    let plan = decide(policy, current, &loads, history, now);
    history.record(
        now,
        plan.recommended,
        policy.scale_up_window.max(policy.scale_down_window),
    );
    let sent = match (plan.direction, usize::try_from(plan.replicas)) {
        (Direction::Hold, _) | (_, Err(_)) => true,
        (_, Ok(replicas)) => nodes.scale(replicas, plan.victims.clone()).await,
    };
    Some((plan, sent))
}

/// Steps every [`LOCAL_STEP_INTERVAL`] until `shutdown` resolves or the
/// supervisor goes away. `spec` is asked every step, so enabling, disabling or
/// retuning `spec.autoscaling` in the manifest takes effect while running.
pub async fn run<N: LocalNodes>(
    mut spec: impl FnMut() -> Option<AutoscalingSpec>,
    nodes: N,
    shutdown: impl Future<Output = ()>,
) {
    let http = scrape_client(SCRAPE_TIMEOUT);
    let mut history = History::default();
    let mut ticks = tokio::time::interval(LOCAL_STEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut last_seen = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let Some(policy) = spec().filter(|s| s.enabled).map(|s| Policy::from(&s)) else {
            // Off: the manifest's replicas rule; a later enable starts afresh.
            history = History::default();
            last_seen = None;
            continue;
        };
        let Some((plan, sent)) = step(&policy, &mut history, &nodes, &http, Instant::now()).await
        else {
            continue;
        };
        // Log every change of decision or of what could be measured, not every hold.
        let seen = (
            plan.recommended,
            plan.measurement.pods_measured,
            plan.measurement.pods_unmeasured,
        );
        if plan.direction != Direction::Hold || last_seen != Some(seen) {
            tracing::info!(
                { STEP_RECOMMENDED } = plan.recommended,
                { STEP_REPLICAS } = plan.replicas,
                { STEP_CONNECTIONS } = plan.measurement.total,
                { STEP_MEASURED } = plan.measurement.pods_measured,
                { STEP_UNMEASURED } = plan.measurement.pods_unmeasured,
                { STEP_VICTIMS } = ?plan.victims,
                "{STEP_MESSAGE}: {}",
                plan.reason
            );
        }
        last_seen = Some(seen);
        if !sent {
            tracing::warn!("local supervisor gone: autoscaler stops");
            return;
        }
    }
}

impl LocalNodes for super::supervisor::Handle {
    fn nodes(&self) -> Vec<LocalNode> {
        self.nodes
            .borrow()
            .iter()
            .map(|n| LocalNode {
                name: n.name.clone(),
                admin: n.admin,
                ready: n.phase == PHASE_READY,
                draining: n.phase == PHASE_DRAINING,
            })
            .collect()
    }

    async fn scale(&self, replicas: usize, drain_first: Vec<String>) -> bool {
        self.control
            .send(super::supervisor::Control::Scale {
                replicas,
                drain_first,
            })
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, routing::get};
    use push_contract::paths::METRICS;
    use std::sync::Mutex;

    struct FakeSupervisor {
        nodes: Vec<LocalNode>,
        scaled: Mutex<Vec<(usize, Vec<String>)>>,
    }

    impl LocalNodes for FakeSupervisor {
        fn nodes(&self) -> Vec<LocalNode> {
            self.nodes.clone()
        }
        async fn scale(&self, replicas: usize, drain_first: Vec<String>) -> bool {
            self.scaled
                .lock()
                .expect("lock")
                .push((replicas, drain_first));
            true
        }
    }

    async fn node(name: &str, connections: i64, ready: bool, draining: bool) -> LocalNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = listener.local_addr().expect("addr");
        let text = format!("push_connections{{transport=\"polling\"}} {connections}\n");
        let app = Router::new().route(METRICS, get(move || async move { text }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        LocalNode {
            name: name.into(),
            admin,
            ready,
            draining,
        }
    }

    fn policy(step: i32) -> Policy {
        Policy {
            min_replicas: 1,
            max_replicas: 5,
            target_connections_per_pod: 20,
            scale_up_window: Duration::ZERO,
            scale_down_window: Duration::ZERO,
            max_scale_in_step: step,
        }
    }

    #[tokio::test]
    async fn scale_in_drains_the_least_loaded_ready_node_and_ignores_draining_ones() {
        let supervisor = FakeSupervisor {
            nodes: vec![
                node("n1", 12, true, false).await,
                node("n2", 2, true, false).await,
                node("n3", 9, true, false).await,
                // Draining: its 50 connections are leaving; neither a replica nor load.
                node("n0", 50, false, true).await,
            ],
            scaled: Mutex::default(),
        };
        let mut history = History::default();
        let http = scrape_client(SCRAPE_TIMEOUT);
        let (plan, sent) = step(&policy(1), &mut history, &supervisor, &http, Instant::now())
            .await
            .expect("a decision");
        assert!(sent);
        // 23 connections / 20 = 2 nodes: one goes, the one with 2 connections.
        assert_eq!((plan.recommended, plan.replicas), (2, 2));
        assert_eq!(
            *supervisor.scaled.lock().expect("lock"),
            vec![(2, vec!["n2".to_string()])]
        );
        assert_eq!(history.len(), 1);
    }

    #[tokio::test]
    async fn hold_sends_nothing_and_no_nodes_decides_nothing() {
        let busy = FakeSupervisor {
            nodes: vec![
                node("n1", 20, true, false).await,
                node("n2", 19, true, false).await,
            ],
            scaled: Mutex::default(),
        };
        let http = scrape_client(SCRAPE_TIMEOUT);
        let mut history = History::default();
        let (plan, _) = step(&policy(1), &mut history, &busy, &http, Instant::now())
            .await
            .expect("a decision");
        assert_eq!(plan.direction, Direction::Hold);
        assert!(busy.scaled.lock().expect("lock").is_empty());

        let empty = FakeSupervisor {
            nodes: vec![],
            scaled: Mutex::default(),
        };
        assert!(
            step(&policy(1), &mut history, &empty, &http, Instant::now())
                .await
                .is_none()
        );
    }
}
