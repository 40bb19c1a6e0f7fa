//! The reconcile shell: the named steps in order, with the awaits between them
//! and nothing else. validate → Redis pods going away → dereference → build + apply →
//! prune → status;
//! the decisions are in [`super::plan`] and [`super::status`].

use super::apply::apply_all;
use super::context::{Context, key};
use super::dereference::{Dereferenced, dereference};
use super::error::ReconcileError;
use super::plan::{self, Applied, Plan};
use super::prune::prune;
use super::redis_pods;
use super::status::{self, Blocker, ExposureState, Observed};
use crate::objects::labels::{Component, selector_string};
use crate::resources::{PushCluster, PushClusterStatus};
use crate::validate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;

/// One reconcile of one PushCluster.
pub async fn reconcile(pc: Arc<PushCluster>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.reconcile_started();
    if pc.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    if pc.pause_requested() {
        return pause(&ctx, &pc).await;
    }
    let namespace = pc.namespace().unwrap_or_default();
    let vc = match validate::validate(&pc, &namespace) {
        Ok(vc) => vc,
        Err(errors) => {
            let blocker = Blocker::InvalidSpec(validate::describe(&errors));
            return block(&ctx, &pc, blocker, None).await;
        }
    };
    let selector = selector_string(&vc, Component::Server);
    // A replicated Redis's primary being deleted is said at once (controller::redis_pods).
    let terminating = redis_pods::terminating_of(&ctx.client, &vc).await;
    let said_early = status::failing_over(pc.status.as_ref(), &terminating, now());
    if let Some(early) = &said_early {
        write_status(&ctx.client, &pc, early).await?;
    }
    // The status as last written: the early one keeps its conditions' transition times.
    let previous = said_early.as_ref().or(pc.status.as_ref());
    let digests = match dereference(&ctx, &pc, &vc).await {
        Ok(Dereferenced::Complete(digests)) => digests,
        Ok(Dereferenced::Missing(missing)) => {
            let blocker = Blocker::MissingSecrets(missing);
            return block(&ctx, &pc, blocker, Some(selector)).await;
        }
        Err(e) => return failed(&ctx, &pc, e.into(), selector).await,
    };
    let mut observed = match apply_all(&ctx, &pc, &vc, &digests).await {
        Ok(observed) => observed,
        Err(e) => return failed(&ctx, &pc, e.into(), selector).await,
    };
    observed.selector = Some(selector.clone());
    observed.redis_pods_terminating = terminating;
    match prune(&ctx.client, &vc).await {
        Ok(pruned) => {
            if let Some(event) = plan::pruned(&pruned) {
                ctx.publish(&pc, &event).await;
            }
        }
        Err(e) => return failed(&ctx, &pc, e.into(), selector).await,
    }
    // The pods are asked first: what they say about Redis goes into the conditions.
    let step = autoscale_step(&ctx, &pc, &selector).await;
    observed.redis_links = step.as_ref().map(|report| report.redis_links.clone());
    observed.pods_rebalancing = step.as_ref().map_or(0, |report| report.pods_rebalancing);
    let mut new = status::compute(&observed, previous, now());
    if let Some(report) = step {
        new.connections = report.connections;
        new.autoscaler = Some(report.status);
        if let Some(event) = report.event {
            ctx.publish(&pc, &event).await;
        }
    }
    let autoscale_every = ctx
        .autoscaler
        .as_ref()
        .map(|_| crate::autoscale::STEP_INTERVAL);
    write_status(&ctx.client, &pc, &new).await?;
    if let Some(gate) = &ctx.rollouts {
        let rolling = new
            .conditions
            .iter()
            .any(|c| c.type_ == status::PROGRESSING && c.reason == status::ROLLING_OUT);
        gate.observe(&key(&pc), rolling, std::time::Instant::now());
    }
    let plan = plan::applied(Applied {
        previous,
        generation: pc.metadata.generation,
        new: &new,
        gateway_api_missing: observed.exposure == Some(ExposureState::GatewayApiMissing),
        autoscale_every,
        rollout_retry: observed.rollout_retry,
        redis_pods_moving: !observed.redis_pods_without_claims.is_empty(),
    });
    ctx.succeeded(&pc);
    Ok(carry_out(&ctx, &pc, plan).await)
}

/// Logs, counts by step and requeues with backoff; never gives up (a namespace being
/// deleted is no failure: the PushCluster goes with it).
pub fn error_policy(pc: Arc<PushCluster>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    if error.namespace_terminating() {
        // The namespace controller deletes the PushCluster too, in an order of its own: a
        // generated Secret may be gone first and cannot be created again there.
        tracing::info!(cluster = %key(&pc), step = error.step(), "namespace is being deleted: the cluster goes with it");
        return Action::await_change();
    }
    ctx.metrics.reconcile_failed(error.step());
    let failures = ctx.failed(&pc);
    let delay = plan::backoff(failures);
    tracing::warn!(cluster = %key(&pc), step = error.step(), %error, failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A step's error, said in the status first (Degraded naming the step, with the API
/// server's answer; not Ready; observedGeneration not moved), then returned for the
/// error policy's backoff.
async fn failed(
    ctx: &Context,
    pc: &PushCluster,
    error: ReconcileError,
    selector: String,
) -> Result<Action, ReconcileError> {
    if error.namespace_terminating() {
        // Nothing to say in a status that is going away: the error policy lets it go.
        return Err(error);
    }
    let blocker = Blocker::StepFailed {
        step: error.step(),
        reason: error.reason(),
        message: error.to_string(),
    };
    block(ctx, pc, blocker, Some(selector)).await?;
    Err(error)
}

/// Reports a blocker in the status (and once as a Warning Event).
async fn block(
    ctx: &Context,
    pc: &PushCluster,
    blocker: Blocker,
    selector: Option<String>,
) -> Result<Action, ReconcileError> {
    let observed = Observed {
        generation: pc.metadata.generation,
        desired_replicas: pc.spec.replicas,
        blocker: Some(blocker.clone()),
        selector,
        ..Observed::default()
    };
    let new = status::compute(&observed, pc.status.as_ref(), now());
    write_status(&ctx.client, pc, &new).await?;
    let plan = plan::blocked(&blocker, pc.status.as_ref(), pc.metadata.generation, &new);
    Ok(carry_out(ctx, pc, plan).await)
}

/// Paused: only the `Paused` condition (and an Event when it starts) is written.
async fn pause(ctx: &Context, pc: &PushCluster) -> Result<Action, ReconcileError> {
    tracing::info!(cluster = %key(pc), "paused: nothing applied, pruned or scaled");
    let new = status::paused(pc.status.as_ref(), now());
    write_status(&ctx.client, pc, &new).await?;
    let plan = plan::paused(pc.status.as_ref());
    Ok(carry_out(ctx, pc, plan).await)
}

async fn carry_out(ctx: &Context, pc: &PushCluster, plan: Plan) -> Action {
    for event in &plan.events {
        ctx.publish(pc, event).await;
    }
    plan.requeue
        .map_or_else(Action::await_change, Action::requeue)
}

/// The autoscaler's step (when configured): fills status.connections and
/// status.autoscaler and says when to come back. Its failures do not fail the reconcile.
/// Measures the pods (and, with autoscaling enabled, decides): `None` without an
/// autoscaler or when the step failed.
async fn autoscale_step(
    ctx: &Context,
    pc: &PushCluster,
    selector: &str,
) -> Option<crate::autoscale::StepReport> {
    let autoscaler = ctx.autoscaler.as_ref()?;
    // Also without spec.autoscaling: status.connections (the Connections column) and the
    // pods' Redis links are measured for every cluster; the step only decides when
    // autoscaling is enabled.
    match autoscaler.step(&ctx.client, pc, selector).await {
        Ok(report) => Some(report),
        Err(e) => {
            tracing::warn!(cluster = %key(pc), error = %e, "autoscaler step failed");
            None
        }
    }
}

async fn write_status(
    client: &Client,
    pc: &PushCluster,
    status: &PushClusterStatus,
) -> Result<(), ReconcileError> {
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
    .await
    .map_err(ReconcileError::Status)?;
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
