//! The reconcile pipeline: validate → build → apply → status.
//!
//! [`reconcile`] reads top to bottom: skip deleted objects (owner references
//! let the garbage collector remove the children), validate (an invalid spec
//! gets a Degraded condition and is not retried until it changes), make sure
//! generated Secrets exist, read referenced Secrets (missing → condition,
//! retry later), server-side apply every desired object, prune owned objects
//! no longer wanted, run the autoscaler step, write the status.
//!
//! Extension points:
//! - autoscaling: [`Context::autoscaler`] is stepped after the apply (see
//!   [`autoscale_step`]: measures always, decides when `spec.autoscaling.enabled`),
//!   and [`scale_in_hook`] marks the least-loaded pods right before a Deployment
//!   apply that lowers the replicas.
//! - permissions: every API request must be covered by [`rbac::PERMISSIONS`]
//!   (the mock-API tests fail otherwise).

pub mod apply;
pub mod leader;
pub mod rbac;
pub mod run;
pub mod status;

use crate::metrics::Metrics;
use crate::objects::{self, ObjectKind};
use crate::resources::{PushCluster, PushClusterStatus};
use crate::validate::{self, ValidatedCluster};
use crate::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use status::{Blocker, ExposureState, Observed};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Re-check a healthy cluster this often (catches rotated referenced Secrets).
pub const RESYNC: Duration = Duration::from_secs(300);
/// Re-check while pods roll out.
pub const PROGRESS_RESYNC: Duration = Duration::from_secs(30);
/// Retry a cluster waiting for a referenced Secret or the Gateway API.
pub const MISSING_DEPENDENCY_RETRY: Duration = Duration::from_secs(60);

/// Shared state of the reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Connection autoscaler; `None` disables the step (tests, or no autoscaling wanted).
    pub autoscaler: Option<Arc<crate::autoscale::Autoscaler>>,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
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
        }
    }
}

fn key(pc: &PushCluster) -> String {
    format!("{}/{}", pc.namespace().unwrap_or_default(), pc.name_any())
}

/// Requeue delay after `failures` consecutive failures: 5 s doubling, capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

/// Logs, counts and requeues with backoff; never gives up.
pub fn error_policy(pc: Arc<PushCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error);
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&pc)).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = backoff(failures);
    tracing::warn!(cluster = %key(&pc), %error, failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn publish(ctx: &Context, pc: &PushCluster, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pc.object_ref(&())).await {
        tracing::warn!(cluster = %key(pc), error = %e, reason, "publishing an event failed");
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn patch_status(client: &Client, pc: &PushCluster, status: &PushClusterStatus) -> Result<()> {
    let api: Api<PushCluster> =
        Api::namespaced(client.clone(), &pc.namespace().unwrap_or_default());
    // A merge patch of the whole status, under our field manager (managedFields names us).
    let params = PatchParams {
        field_manager: Some(push_contract::kube::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch_status(
        &pc.name_any(),
        &params,
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Whether the current status already reports this Degraded reason+message
/// (so a re-reconcile of an unchanged bad spec does not repeat the Event).
fn already_degraded(pc: &PushCluster, reason: &str, message: &str) -> bool {
    pc.status.as_ref().is_some_and(|s| {
        s.observed_generation == pc.metadata.generation
            && s.conditions.iter().any(|c| {
                c.type_ == status::DEGRADED
                    && c.status == "True"
                    && c.reason == reason
                    && c.message == message
            })
    })
}

/// Report a blocker in the status (and once as a Warning Event).
async fn block(
    ctx: &Context,
    pc: &PushCluster,
    blocker: Blocker,
    selector: Option<String>,
) -> Result<()> {
    let observed = Observed {
        generation: pc.metadata.generation,
        desired_replicas: pc.spec.replicas,
        blocker: Some(blocker),
        selector,
        ..Observed::default()
    };
    let new = status::compute(&observed, pc.status.as_ref(), now());
    let degraded = new.conditions.iter().find(|c| c.type_ == status::DEGRADED);
    let (reason, message) = degraded
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default();
    let repeat = already_degraded(pc, &reason, &message);
    patch_status(&ctx.client, pc, &new).await?;
    if !repeat {
        publish(ctx, pc, EventType::Warning, &reason, message).await;
    }
    Ok(())
}

/// One reconcile of one PushCluster.
pub async fn reconcile(pc: Arc<PushCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    if pc.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = pc.namespace().unwrap_or_default();
    let vc = match validate::validate(&pc, &namespace) {
        Ok(vc) => vc,
        Err(errors) => {
            block(
                &ctx,
                &pc,
                Blocker::InvalidSpec(validate::describe(&errors)),
                None,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let selector = objects::labels::selector_string(&vc, objects::labels::Component::Server);

    let (created, mut secrets) = apply::ensure_generated_secrets(&ctx.client, &vc).await?;
    // One Event per kind of action: kube's Recorder folds same-reason Events into a series.
    if !created.is_empty() {
        let note = format!("generated Secret(s) {}", created.join(", "));
        publish(&ctx, &pc, EventType::Normal, "SecretCreated", note).await;
    }
    match apply::read_referenced_secrets(&ctx.client, &vc).await? {
        Ok(referenced) => secrets.extend(referenced),
        Err(missing) => {
            block(&ctx, &pc, Blocker::MissingSecrets(missing), Some(selector)).await?;
            return Ok(Action::requeue(MISSING_DEPENDENCY_RETRY));
        }
    }
    let digest = apply::secrets_digest(&secrets);
    let mut observed = apply_all(&ctx, &pc, &vc, &digest).await?;
    observed.selector = Some(selector.clone());

    let deleted = apply::prune(&ctx.client, &vc).await?;
    if !deleted.is_empty() {
        let note = format!(
            "deleted {}: no longer wanted by the spec",
            deleted.join(", ")
        );
        publish(&ctx, &pc, EventType::Normal, "Deleted", note).await;
    }

    let mut new = status::compute(&observed, pc.status.as_ref(), now());
    let pods_lost = |s: &PushClusterStatus| {
        s.conditions
            .iter()
            .find(|c| {
                c.type_ == status::DEGRADED
                    && c.status == "True"
                    && c.reason == status::PODS_UNAVAILABLE
            })
            .cloned()
    };
    let newly_lost = pods_lost(&new).filter(|_| pc.status.as_ref().and_then(pods_lost).is_none());
    let mut next = if new.conditions.iter().any(|c| {
        (c.type_ == status::PROGRESSING || c.type_ == status::DEGRADED) && c.status == "True"
    }) {
        PROGRESS_RESYNC
    } else {
        RESYNC
    };
    if observed.exposure == Some(ExposureState::GatewayApiMissing) {
        next = next.min(MISSING_DEPENDENCY_RETRY);
    }
    if let Some(step) = autoscale_step(&ctx, &pc, &selector, &mut new).await {
        next = next.min(step);
    }
    patch_status(&ctx.client, &pc, &new).await?;
    if let Some(lost) = newly_lost {
        publish(&ctx, &pc, EventType::Warning, &lost.reason, lost.message).await;
    }
    let generation_changed =
        pc.status.as_ref().and_then(|s| s.observed_generation) != pc.metadata.generation;
    if generation_changed {
        let reason = if pc
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_none()
        {
            "Created"
        } else {
            "Updated"
        };
        publish(
            &ctx,
            &pc,
            EventType::Normal,
            reason,
            format!(
                "applied generation {}",
                pc.metadata.generation.unwrap_or_default()
            ),
        )
        .await;
    }
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&key(&pc));
    }
    Ok(Action::requeue(next))
}

/// Server-side apply of every desired object; what came back feeds the status.
async fn apply_all(
    ctx: &Context,
    pc: &PushCluster,
    vc: &ValidatedCluster,
    digest: &str,
) -> Result<Observed> {
    let gateway_installed = if vc.spec.exposure.gateway.is_some() {
        apply::gateway_api_installed(&ctx.client).await?
    } else {
        true
    };
    let mut observed = Observed {
        generation: pc.metadata.generation,
        desired_replicas: vc.spec.replicas,
        endpoint: Some(objects::exposure::endpoint(vc)),
        exposure: Some(if gateway_installed {
            ExposureState::Configured(exposure_summary(vc))
        } else {
            ExposureState::GatewayApiMissing
        }),
        ..Observed::default()
    };
    for object in objects::desired_objects(vc, digest) {
        if object.kind() == ObjectKind::HttpRoute && !gateway_installed {
            continue;
        }
        if object.kind() == ObjectKind::Deployment {
            scale_in_hook(ctx, pc, vc, &object.name()).await?;
        }
        let applied = match apply::apply(&ctx.client, &vc.namespace, &object).await {
            Ok(applied) => applied,
            Err(e) => {
                let note = format!("applying {:?}/{} failed: {e}", object.kind(), object.name());
                publish(ctx, pc, EventType::Warning, "ApplyFailed", note).await;
                return Err(e);
            }
        };
        let status = applied.data.get("status");
        match object.kind() {
            ObjectKind::Deployment => {
                observed.deployment_generation = applied.metadata.generation;
                observed.deployment = status.and_then(|s| serde_json::from_value(s.clone()).ok());
            }
            ObjectKind::StatefulSet => {
                observed.redis_ready_replicas = Some(
                    status
                        .and_then(|s| s.get("readyReplicas"))
                        .and_then(|r| r.as_i64())
                        .and_then(|r| i32::try_from(r).ok())
                        .unwrap_or(0),
                );
            }
            _ => {}
        }
    }
    Ok(observed)
}

fn exposure_summary(vc: &ValidatedCluster) -> String {
    let exposure = &vc.spec.exposure;
    if exposure.gateway.is_some() {
        format!(
            "HTTPRoute {} with cookie session persistence",
            vc.names.server
        )
    } else if let Some(ingress) = &exposure.ingress {
        format!(
            "Ingress {} ({:?} {:?} affinity)",
            vc.names.server, ingress.controller, ingress.affinity
        )
    } else {
        format!("Service {} with ClientIP session affinity", vc.names.server)
    }
}

/// Scale-in without a storm (crate::autoscale::scale_in): before the Deployment's
/// replicas drop — by the connection autoscaler, `kubectl scale`, an HPA or KEDA —
/// the least-loaded pods get a low pod-deletion-cost. If that fails the reconcile
/// fails before the apply, so the replicas are not lowered without the marks.
async fn scale_in_hook(
    ctx: &Context,
    pc: &PushCluster,
    vc: &ValidatedCluster,
    deployment: &str,
) -> Result<()> {
    let Some(autoscaler) = ctx.autoscaler.as_ref() else {
        return Ok(());
    };
    let selector = objects::labels::selector_string(vc, objects::labels::Component::Server);
    match autoscaler
        .before_deployment_apply(
            &ctx.client,
            &vc.namespace,
            deployment,
            &selector,
            vc.spec.replicas,
        )
        .await
    {
        Ok(victims) if victims.is_empty() => Ok(()),
        Ok(victims) => {
            let note = format!(
                "scaling in to {}: the pod(s) with the fewest connections go first and drain: {}",
                vc.spec.replicas,
                victims.join(", ")
            );
            publish(ctx, pc, EventType::Normal, "ScaleIn", note).await;
            Ok(())
        }
        Err(e) => {
            let note = format!("marking the pods to remove failed, replicas not lowered yet: {e}");
            publish(ctx, pc, EventType::Warning, "ScaleInDeferred", note).await;
            Err(e.into())
        }
    }
}

/// The autoscaler's step (when configured): fills status.connections and
/// status.autoscaler and says when to come back. Its failures do not fail the reconcile.
async fn autoscale_step(
    ctx: &Context,
    pc: &PushCluster,
    selector: &str,
    status: &mut PushClusterStatus,
) -> Option<Duration> {
    let autoscaler = ctx.autoscaler.as_ref()?;
    // Also without spec.autoscaling: status.connections (the Connections column) is
    // measured for every cluster; the step only decides when autoscaling is enabled.
    match autoscaler.step(&ctx.client, pc, selector).await {
        Ok(report) => {
            status.connections = report.connections;
            status.autoscaler = Some(report.status);
            if let Some(event) = report.event
                && let Err(e) = ctx
                    .recorder
                    .publish(&event.to_event(), &pc.object_ref(&()))
                    .await
            {
                tracing::warn!(cluster = %key(pc), error = %e, "publishing an autoscaler event failed");
            }
        }
        Err(e) => tracing::warn!(cluster = %key(pc), error = %e, "autoscaler step failed"),
    }
    Some(crate::autoscale::STEP_INTERVAL)
}

#[cfg(test)]
mod rbac_coverage_tests;
#[cfg(test)]
mod test_calls;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let cases: &[(&str, u32, u64)] = &[
            ("first failure", 1, 5),
            ("second", 2, 10),
            ("third", 3, 20),
            ("capped", 10, 300),
            ("huge count does not overflow", u32::MAX, 300),
        ];
        for (case, failures, secs) in cases {
            assert_eq!(
                backoff(*failures),
                Duration::from_secs(*secs),
                "case {case:?}"
            );
        }
    }
}
