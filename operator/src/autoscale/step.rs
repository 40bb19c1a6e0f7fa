//! One autoscaling step against the Kubernetes API: the thin shell around
//! [`decide`]. The controller calls [`Autoscaler::step`] from its reconcile
//! (and requeues after [`STEP_INTERVAL`]), and [`prepare_scale_in`] right before
//! it applies a Deployment with fewer replicas than it has now.
//!
//! The rule with external scalers: while `spec.autoscaling.enabled` is false
//! the operator never writes spec.replicas — HPA, KEDA or `kubectl scale` own it
//! through the scale subresource. While it is true, the operator owns it and
//! refuses to act when an HPA (KEDA's ScaledObject creates one, `keda-hpa-*`)
//! targets the same PushCluster: it publishes a Warning Event and keeps only
//! measuring until one of the two is removed.
//!
//! [`Autoscaler::before_deployment_apply`] is that hook in one call.
//!
//! The operator writes replicas with a JSON merge patch on the scale
//! subresource (`PATCH .../pushclusters/NAME/scale`, `{"spec":{"replicas":N}}`):
//! the same door `kubectl scale` and the HPA use, RBAC can grant it alone
//! (`pushclusters/scale`: patch), and the body cannot touch any other field.

use super::decision::{Direction, History, Plan, Policy, decide};
use super::field_manager::patch_params;
use super::load::{Measurement, PodLoad};
use super::scale_in::{choose_victims, cost_patches, mark};
use super::scrape::{
    RedisLinks, SCRAPE_TIMEOUT, client as scrape_client, ready_loads, scrape_all, targets_from_pods,
};
use crate::events::{EventReason, PendingEvent};
use crate::resources::{AutoscalerStatus, PushCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch};
use kube::{Client, ResourceExt};
use push_contract::kube::{GROUP, KIND};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a PushCluster with autoscaling is re-evaluated (the HPA's default sync period).
pub const STEP_INTERVAL: Duration = Duration::from_secs(15);
/// Least time between two decisions for one PushCluster. Reconciles also run on
/// every watch event (a replica change causes several): they re-measure but do
/// not decide again, so `maxScaleInStep` holds per [`STEP_INTERVAL`], not per
/// event. The slack absorbs requeue timer jitter.
pub const MIN_DECISION_GAP: Duration = Duration::from_secs(13);

/// What one step found and did, for the status and the Events.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// What every pod that answered says about its Redis link.
    pub redis_links: RedisLinks,
    /// Pods asked to move clients off whose round is not over: not-ready on purpose.
    pub pods_rebalancing: i32,
    /// status.connections: the sum over the pods that answered (None: none answered).
    pub connections: Option<i64>,
    /// status.autoscaler.
    pub status: AutoscalerStatus,
    /// The decision, when autoscaling is enabled.
    pub plan: Option<Plan>,
    /// An Event to publish for this step, if it is worth one.
    pub event: Option<PendingEvent>,
}

/// Per-PushCluster recommendation histories (in memory: see [`History`] for what
/// a restart or leader change means) and the scrape client.
pub struct Autoscaler {
    clusters: Mutex<HashMap<String, ClusterMemory>>,
    http: reqwest::Client,
    admin_port: u16,
}

impl Autoscaler {
    pub fn new(admin_port: u16) -> Self {
        Self {
            clusters: Mutex::default(),
            http: scrape_client(SCRAPE_TIMEOUT),
            admin_port,
        }
    }

    /// Forget a deleted PushCluster's history.
    pub fn forget(&self, pc: &PushCluster) {
        if let Ok(mut c) = self.clusters.lock() {
            c.remove(&key(pc));
        }
    }

    /// Measure the ready pods matching `selector`; when autoscaling is enabled and
    /// no HPA targets this PushCluster, decide and write spec.replicas.
    pub async fn step(
        &self,
        client: &Client,
        pc: &PushCluster,
        selector: &str,
    ) -> Result<StepReport, kube::Error> {
        let ns = pc.namespace().unwrap_or_default();
        let name = pc.name_any();
        let pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels(selector))
            .await?
            .items;
        let scraped = scrape_all(
            &self.http,
            &targets_from_pods(&pods, self.admin_port),
            SCRAPE_TIMEOUT,
        )
        .await;
        let loads = ready_loads(&scraped);
        let rebalanced = self.rebalance_if_due(client, pc, &pods, &loads).await;
        let measurement = Measurement::of(&loads);
        let previous = pc.status.as_ref().and_then(|s| s.autoscaler.clone());
        let previous_recommended = previous.as_ref().and_then(|p| p.recommended_replicas);
        let mut status = AutoscalerStatus {
            recommended_replicas: None,
            pods_measured: measurement.pods_measured,
            pods_unmeasured: measurement.pods_unmeasured,
            last_scale_time: previous.and_then(|p| p.last_scale_time),
        };
        let connections = (measurement.pods_measured > 0).then_some(measurement.total);
        let mut report = StepReport {
            redis_links: RedisLinks::of(&scraped),
            pods_rebalancing: self.pods_rebalancing(pc, Instant::now()),
            connections,
            status: status.clone(),
            plan: None,
            event: rebalanced,
        };
        let Some(spec) = pc.spec.autoscaling.as_ref().filter(|a| a.enabled) else {
            return Ok(report);
        };
        let policy = Policy::from(spec);
        let now = Instant::now();
        let Some(plan) = self.decide_if_due(pc, &policy, &loads, now) else {
            // Measured only: keep showing the last decision's recommendation.
            report.status.recommended_replicas = pc
                .status
                .as_ref()
                .and_then(|s| s.autoscaler.as_ref())
                .and_then(|a| a.recommended_replicas);
            return Ok(report);
        };
        status.recommended_replicas = Some(plan.recommended);

        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items;
        if let Some(hpa) = external_scaler(&hpas, &name) {
            report.event = Some(PendingEvent::new(
                EventReason::ExternalScalerConflict,
                format!(
                    "HorizontalPodAutoscaler {hpa} targets this PushCluster while spec.autoscaling.enabled is true; the operator does not scale it. Remove the HPA/ScaledObject or set spec.autoscaling.enabled=false. {}",
                    plan.reason
                ),
            ));
        } else if plan.direction != Direction::Hold {
            set_replicas(&Api::namespaced(client.clone(), &ns), &name, plan.replicas).await?;
            status.last_scale_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            let reason = match plan.direction {
                Direction::Up => EventReason::ScaledUp,
                _ => EventReason::ScaledDown,
            };
            report.event = Some(PendingEvent::new(reason, plan.reason.clone()));
        } else if measurement.pods_measured == 0 && measurement.pods_unmeasured > 0 {
            report.event = Some(PendingEvent::new(
                EventReason::MetricsUnavailable,
                plan.reason.clone(),
            ));
        } else if previous_recommended != Some(plan.recommended) {
            // A hold worth knowing: the recommendation moved but a window or the
            // tolerance keeps the replicas (the note says which).
            report.event = Some(PendingEvent::new(
                EventReason::RecommendationChanged,
                plan.reason.clone(),
            ));
        }
        report.status = status;
        report.plan = Some(plan);
        Ok(report)
    }
}

impl Autoscaler {
    /// The scale-in hook: call right before applying the Deployment `deployment`
    /// with `desired` replicas. When the live Deployment has more, the least-loaded
    /// pods are marked first (see [`prepare_scale_in`]); returns them (empty when
    /// nothing is scaled in, or the Deployment does not exist yet). An error means
    /// the marks are not all written: do not lower the replicas in this reconcile.
    pub async fn before_deployment_apply(
        &self,
        client: &Client,
        namespace: &str,
        deployment: &str,
        selector: &str,
        desired: i32,
    ) -> Result<Vec<String>, kube::Error> {
        let live = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(deployment)
            .await?;
        let current = live.and_then(|d| d.spec.replicas).unwrap_or(0);
        if current <= desired {
            return Ok(Vec::new());
        }
        let pods = Api::<Pod>::namespaced(client.clone(), namespace);
        prepare_scale_in(
            &pods,
            &self.http,
            self.admin_port,
            selector,
            current,
            desired,
        )
        .await
    }

    /// Decide and remember the recommendation, unless this cluster's last
    /// decision is younger than [`MIN_DECISION_GAP`].
    fn decide_if_due(
        &self,
        pc: &PushCluster,
        policy: &Policy,
        loads: &[PodLoad],
        now: Instant,
    ) -> Option<Plan> {
        let mut clusters = self.clusters.lock().ok()?;
        let memory = clusters.entry(key(pc)).or_default();
        if !decision_due(memory.last_decision, now) {
            return None;
        }
        let plan = decide(policy, pc.spec.replicas, loads, &memory.history, now);
        let keep = policy.scale_up_window.max(policy.scale_down_window);
        memory.history.record(now, plan.recommended, keep);
        memory.last_decision = Some(now);
        Some(plan)
    }
}

/// A pod moving clients off says not-ready; the Service drops it after its readiness
/// probe fails twice, 5 s apart (objects::deployment), so its moved clients, whatever
/// their affinity, reconnect to the others. A margin on top.
pub const REBALANCE_SETTLE: Duration = Duration::from_secs(12);

/// What the autoscaler remembers of one PushCluster (in memory only).
#[derive(Debug, Default)]
struct ClusterMemory {
    history: History,
    last_decision: Option<Instant>,
    /// spec.replicas at the last step, and whether a scale-out since awaits its rebalance.
    replicas_seen: Option<i32>,
    rebalance_due: bool,
    /// The pods of the last round and when they are ready again at the latest.
    rebalancing: Option<(i32, Instant)>,
}

impl Autoscaler {
    /// After a scale-out (spec.replicas went up since the last step, whoever raised it),
    /// once exactly the wanted pods are Ready and all answered: the pods above their
    /// share are asked to move the surplus ([`super::rebalance`]). Returns the Event.
    async fn rebalance_if_due(
        &self,
        client: &Client,
        pc: &PushCluster,
        pods: &[Pod],
        loads: &[PodLoad],
    ) -> Option<PendingEvent> {
        let wanted = pc.spec.replicas;
        let spec = pc.spec.rebalance();
        {
            let mut clusters = self.clusters.lock().ok()?;
            let memory = clusters.entry(key(pc)).or_default();
            match memory.replicas_seen.replace(wanted) {
                Some(before) if wanted > before => memory.rebalance_due = true,
                Some(before) if wanted < before => memory.rebalance_due = false,
                _ => {}
            }
            let settled =
                loads.len() == usize::try_from(wanted).unwrap_or(0) && pods.len() == loads.len();
            if !memory.rebalance_due || !spec.enabled || !settled {
                memory.rebalance_due &= spec.enabled;
                return None;
            }
            memory.rebalance_due = false;
        }
        let moves = super::rebalance::moves(loads);
        if moves.is_empty() {
            return None;
        }
        let ns = pc.namespace().unwrap_or_default();
        let token_ref = crate::objects::deployment::api_token_secret_of(
            &pc.spec,
            &crate::validate::DerivedNames::for_cluster(&pc.name_any()),
        );
        let token = match Api::<Secret>::namespaced(client.clone(), &ns)
            .get(&token_ref.name)
            .await
        {
            Ok(secret) => secret
                .data
                .and_then(|d| d.get(&token_ref.key).cloned())
                .and_then(|b| String::from_utf8(b.0).ok())?,
            Err(e) => {
                tracing::warn!(cluster = %key(pc), error = %e, "rebalance skipped: API token not read");
                return None;
            }
        };
        let mut notes = Vec::new();
        let mut asked = 0;
        for m in &moves {
            let Some(addr) = pod_admin(pods, &m.pod, self.admin_port) else {
                continue;
            };
            match super::rebalance::request(
                &self.http,
                addr,
                &token,
                m.connections,
                spec.window_seconds,
                REBALANCE_SETTLE,
            )
            .await
            {
                Ok(moving) => {
                    asked += 1;
                    notes.push(format!("{moving} off {}", m.pod));
                }
                Err(e) => {
                    tracing::warn!(cluster = %key(pc), pod = %m.pod, error = %e, "rebalance refused")
                }
            }
        }
        // Ready again after the settle time and the window, seen by the next probe.
        let over = Instant::now()
            + REBALANCE_SETTLE
            + Duration::from_secs(u64::try_from(spec.window_seconds).unwrap_or(0))
            + Duration::from_secs(10);
        if let Ok(mut clusters) = self.clusters.lock() {
            clusters.entry(key(pc)).or_default().rebalancing = Some((asked, over));
        }
        (!notes.is_empty()).then(|| {
            PendingEvent::new(
                EventReason::Rebalanced,
                format!(
                    "scaled out to {wanted} pods: moving clients to the new ones over {} s ({})",
                    spec.window_seconds,
                    notes.join(", ")
                ),
            )
        })
    }

    /// How many pods are not ready because they move clients off (see
    /// [`Self::rebalance_if_due`]), at `now`.
    fn pods_rebalancing(&self, pc: &PushCluster, now: Instant) -> i32 {
        self.clusters
            .lock()
            .ok()
            .and_then(|c| c.get(&key(pc)).and_then(|m| m.rebalancing))
            .filter(|(_, over)| now < *over)
            .map_or(0, |(pods, _)| pods)
    }
}

/// A pod's server port, by name.
fn pod_admin(pods: &[Pod], name: &str, port: u16) -> Option<std::net::SocketAddr> {
    let pod = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))?;
    let ip: std::net::IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, port))
}

/// Whether a new decision may be taken at `now`.
fn decision_due(last_decision: Option<Instant>, now: Instant) -> bool {
    last_decision.is_none_or(|last| now.saturating_duration_since(last) >= MIN_DECISION_GAP)
}

fn key(pc: &PushCluster) -> String {
    format!("{}/{}", pc.namespace().unwrap_or_default(), pc.name_any())
}

/// The name of an HPA whose scaleTargetRef is this PushCluster, if any.
pub fn external_scaler(hpas: &[HorizontalPodAutoscaler], cluster: &str) -> Option<String> {
    hpas.iter()
        .find(|hpa| {
            let t = &hpa.spec.scale_target_ref;
            let group = t
                .api_version
                .as_deref()
                .and_then(|v| v.split_once('/'))
                .map(|(g, _)| g);
            t.kind == KIND && t.name == cluster && group == Some(GROUP)
        })
        .map(|hpa| hpa.name_any())
}

/// Write spec.replicas through the scale subresource.
pub async fn set_replicas(
    api: &Api<PushCluster>,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    api.patch_scale(
        name,
        &patch_params(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .map(|_| ())
}

/// Before a Deployment goes from `from` to `to` replicas (`to < from`): mark the
/// `from - to` least-loaded ready pods (scraped now) with a low
/// pod-deletion-cost and clear stale marks. Returns the victims. An error means
/// not every victim is marked: the caller should not lower the replicas yet.
pub async fn prepare_scale_in(
    pods_api: &Api<Pod>,
    http: &reqwest::Client,
    admin_port: u16,
    selector: &str,
    from: i32,
    to: i32,
) -> Result<Vec<String>, kube::Error> {
    let pods = pods_api
        .list(&ListParams::default().labels(selector))
        .await?
        .items;
    let ready: Vec<_> = targets_from_pods(&pods, admin_port)
        .into_iter()
        .filter(|t| t.ready)
        .collect();
    let loads = ready_loads(&scrape_all(http, &ready, SCRAPE_TIMEOUT).await);
    let k = usize::try_from(from.saturating_sub(to)).unwrap_or(0);
    let victims = choose_victims(&loads, k);
    mark(pods_api, &cost_patches(&pods, &victims)).await?;
    Ok(victims)
}

#[cfg(test)]
mod tests;
