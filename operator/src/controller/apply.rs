//! Step 3 of a reconcile: server-side apply of every object the builders
//! produce, in order, and what the API server answered (the status's input).
//! Right before a Deployment apply that lowers the replicas, the least-loaded
//! pods are marked to go first (see [`scale_in_hook`]).

use super::context::{Context, key};
use super::exposure_check;
use super::plan;
use super::redis_volumes;
use super::rollout::Admission;
use super::status::{ExposureState, Observed};
use crate::events::{EventReason, PendingEvent};
use crate::objects::labels::{self, Component};
use crate::objects::{self, DesiredObject, ObjectKind, SecretDigests};
use crate::resources::PushCluster;
use crate::validate::ValidatedCluster;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("discovering whether the Gateway API is served: {0}")]
    Discovery(#[source] kube::Error),
    #[error("serializing {object}: {source}")]
    Serialize {
        object: String,
        source: serde_json::Error,
    },
    #[error("applying {object} failed: {source}")]
    Apply { object: String, source: kube::Error },
    #[error("marking the pods to remove failed, replicas not lowered yet: {0}")]
    ScaleIn(#[source] kube::Error),
    #[error("{object} was deleted to be created again, and is still there after {after:?}")]
    RecreateTimedOut { object: String, after: Duration },
    #[error("moving the Redis pods onto their volume claims: {0}")]
    VolumeRoll(#[source] kube::Error),
}

/// Server-side apply under the operator's field manager, forcing ownership of
/// the fields it sets (`?fieldManager=pushcluster-operator&force=true`).
pub fn apply_params() -> PatchParams {
    PatchParams::apply(push_contract::kube::FIELD_MANAGER).force()
}

/// Applies every desired object; an Event for a failed apply or a scale-in.
pub async fn apply_all(
    ctx: &Context,
    pc: &PushCluster,
    vc: &ValidatedCluster,
    digests: &SecretDigests,
) -> Result<Observed, ApplyError> {
    let gateway_installed = if vc.spec.exposure.gateway.is_some() {
        gateway_api_installed(&ctx.client)
            .await
            .map_err(ApplyError::Discovery)?
    } else {
        true
    };
    let mut observed = Observed {
        generation: pc.metadata.generation,
        desired_replicas: vc.spec.replicas,
        redis_replicas_requested: vc.spec.redis.managed.as_ref().map_or(0, |m| m.replicas),
        endpoint: Some(objects::exposure::endpoint(vc)),
        exposure: Some(if gateway_installed {
            ExposureState::Configured(plan::exposure_summary(vc))
        } else {
            ExposureState::GatewayApiMissing
        }),
        ..Observed::default()
    };
    for object in objects::desired_objects(vc, digests) {
        if object.kind() == ObjectKind::HttpRoute && !gateway_installed {
            continue;
        }
        // The Redis servers wait while their Sentinels roll (see objects::desired_objects),
        // and the push pods while another cluster's operator-caused rollout runs.
        let mut hold = object.kind() == ObjectKind::StatefulSet
            && object.name() == vc.names.redis
            && observed.sentinels_rolling;
        if object.kind() == ObjectKind::Deployment {
            let hash = object.pod_config_hash();
            observed.pod_template_hash = hash.clone();
            if let Some(Admission::Wait { reason, retry }) = rollout_turn(ctx, pc, hash.as_deref())
            {
                tracing::info!(cluster = %key(pc), %reason, "operator-caused rollout queued");
                hold = true;
                observed.pod_template_hash =
                    pc.status.as_ref().and_then(|s| s.pod_template_hash.clone());
                observed.rollout_queued = Some(reason);
                observed.rollout_retry = Some(retry);
            } else {
                scale_in_hook(ctx, pc, vc, &object.name()).await?;
            }
        }
        let applied = match apply_or_recreate(ctx, pc, &vc.namespace, &object, hold).await {
            Ok(applied) => applied,
            // Standard-channel CRDs: never a route without stickiness; said by ExposureReady
            // (and its Event), not as a failed apply on every reconcile.
            Err(ApplyError::Apply {
                source: kube::Error::Api(refusal),
                ..
            }) if object.kind() == ObjectKind::HttpRoute
                && exposure_check::refuses_session_persistence(&refusal.message) =>
            {
                observed.exposure = Some(ExposureState::SessionPersistenceDropped);
                continue;
            }
            Err(e) => {
                ctx.publish(
                    pc,
                    &PendingEvent::new(EventReason::ApplyFailed, e.to_string()),
                )
                .await;
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
                let ready = status
                    .and_then(|s| s.get("readyReplicas"))
                    .and_then(|r| r.as_i64())
                    .and_then(|r| i32::try_from(r).ok())
                    .unwrap_or(0);
                if object.name() == vc.names.redis_sentinel {
                    observed.sentinels_ready = Some(ready);
                    observed.sentinels_rolling =
                        plan::statefulset_rolling(&applied.metadata, status);
                } else {
                    observed.redis_ready_replicas = Some(ready);
                    move_redis_onto_claims(ctx, pc, vc, &applied, &mut observed).await?;
                }
            }
            ObjectKind::Ingress => {
                if let Some(ingress) = &vc.spec.exposure.ingress {
                    observed.exposure = Some(exposure_check::ingress(
                        plan::exposure_summary(vc),
                        &ingress.class_name,
                        &applied.data,
                    ));
                }
            }
            ObjectKind::HttpRoute => {
                if let Some(gateway) = &vc.spec.exposure.gateway {
                    observed.exposure = Some(exposure_check::route(
                        plan::exposure_summary(vc),
                        &gateway.parent_ref,
                        &vc.namespace,
                        &applied.data,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(observed)
}

/// A Redis StatefulSet with claim templates that is still rolling: its pods without
/// their claims are evicted one at a time ([`redis_volumes`]); while any is left, the
/// reconcile looks again soon (`plan::REDIS_VOLUME_RESYNC`).
async fn move_redis_onto_claims(
    ctx: &Context,
    pc: &PushCluster,
    vc: &ValidatedCluster,
    applied: &DynamicObject,
    observed: &mut Observed,
) -> Result<(), ApplyError> {
    let spec = &applied.data["spec"];
    let templates: Vec<String> = spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    if templates.is_empty()
        || !plan::statefulset_rolling(&applied.metadata, applied.data.get("status"))
    {
        return Ok(());
    }
    let replicas = spec["replicas"]
        .as_u64()
        .and_then(|r| usize::try_from(r).ok())
        .unwrap_or(1);
    let selector = labels::selector_string(vc, Component::Redis);
    let roll = redis_volumes::roll_onto_claims(
        &ctx.client,
        &vc.namespace,
        &selector,
        &templates,
        replicas,
    )
    .await
    .map_err(ApplyError::VolumeRoll)?;
    if let Some(pod) = &roll.evicted {
        ctx.publish(pc, &plan::redis_pod_evicted(pod)).await;
    }
    observed.redis_pods_without_claims = roll.waiting;
    Ok(())
}

/// The rollout gate's answer when applying `hash` would roll the pods for a reason of
/// the operator's own: a new template while the spec is the one last applied. `None`:
/// no gate, no change, or the user's change (not queued).
fn rollout_turn(ctx: &Context, pc: &PushCluster, hash: Option<&str>) -> Option<Admission> {
    let gate = ctx.rollouts.as_ref()?;
    let status = pc.status.as_ref()?;
    let applied = status.pod_template_hash.as_deref()?;
    let own_change = hash.is_some_and(|h| h != applied)
        && status.observed_generation.is_some()
        && status.observed_generation == pc.metadata.generation;
    own_change.then(|| gate.admit(&key(pc), std::time::Instant::now()))
}

/// How long a StatefulSet recreation waits for the old object to be gone.
const RECREATE_DEADLINE: Duration = Duration::from_secs(60);
const RECREATE_POLL: Duration = Duration::from_millis(250);

/// [`apply`], except that a StatefulSet whose change touches a field the API server
/// keeps immutable (`volumeClaimTemplates`: turning persistence on or off, a new size or
/// class) is first deleted with its pods orphaned, then created again: the new one adopts
/// the running pods and rolls them to the new template one at a time, the way any
/// template change rolls. Applied as it was, every reconcile failed with 422, and since
/// Redis is applied first, every later change of the cluster waited behind it.
///
/// `hold`: an object that exists is left as it is (returned as stored) this time.
async fn apply_or_recreate(
    ctx: &Context,
    pc: &PushCluster,
    ns: &str,
    object: &DesiredObject,
    hold: bool,
) -> Result<DynamicObject, ApplyError> {
    if hold || object.kind() == ObjectKind::StatefulSet {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &object.kind().api_resource());
        let current = api
            .get_opt(&object.name())
            .await
            .map_err(|source| ApplyError::Apply {
                object: format!("{:?}/{}", object.kind(), object.name()),
                source,
            })?;
        let desired = object.to_json().map_err(|source| ApplyError::Serialize {
            object: object.name(),
            source,
        })?;
        if let Some(current) = current.as_ref()
            && hold
        {
            tracing::info!(object = %object.name(), "held as it is this time");
            return Ok(current.clone());
        }
        if object.kind() == ObjectKind::StatefulSet
            && let Some(current) = current
            && let Some(change) = plan::immutable_change(&current.data, &desired)
        {
            ctx.publish(pc, &plan::statefulset_recreated(&object.name(), &change))
                .await;
            delete_orphaning_pods(&api, object, current.metadata.uid).await?;
        }
    }
    apply(&ctx.client, ns, object).await
}

/// Deletes the object (the one read: `uid`), leaving its pods (and claims) running,
/// and waits until the API server no longer has it.
async fn delete_orphaning_pods(
    api: &Api<DynamicObject>,
    object: &DesiredObject,
    uid: Option<String>,
) -> Result<(), ApplyError> {
    let failed = |source| ApplyError::Apply {
        object: format!("{:?}/{} (recreating)", object.kind(), object.name()),
        source,
    };
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&object.name(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(failed(e)),
    }
    let deadline = tokio::time::Instant::now() + RECREATE_DEADLINE;
    while api.get_opt(&object.name()).await.map_err(failed)?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApplyError::RecreateTimedOut {
                object: format!("{:?}/{}", object.kind(), object.name()),
                after: RECREATE_DEADLINE,
            });
        }
        tokio::time::sleep(RECREATE_POLL).await;
    }
    Ok(())
}

/// Server-side apply one object; returns it as the API server stored it.
pub async fn apply(
    client: &Client,
    ns: &str,
    object: &DesiredObject,
) -> Result<DynamicObject, ApplyError> {
    let name = || format!("{:?}/{}", object.kind(), object.name());
    let body = object.to_json().map_err(|source| ApplyError::Serialize {
        object: name(),
        source,
    })?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &object.kind().api_resource());
    api.patch(&object.name(), &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|source| ApplyError::Apply {
            object: name(),
            source,
        })
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
) -> Result<(), ApplyError> {
    let Some(autoscaler) = ctx.autoscaler.as_ref() else {
        return Ok(());
    };
    let selector = objects::labels::selector_string(vc, objects::labels::Component::Server);
    let marked = autoscaler
        .before_deployment_apply(
            &ctx.client,
            &vc.namespace,
            deployment,
            &selector,
            vc.spec.replicas,
        )
        .await
        .map_err(ApplyError::ScaleIn);
    let event = match &marked {
        Ok(victims) => plan::scale_in(vc.spec.replicas, victims),
        Err(e) => Some(PendingEvent::new(
            EventReason::ScaleInDeferred,
            e.to_string(),
        )),
    };
    if let Some(event) = event {
        ctx.publish(pc, &event).await;
    }
    marked.map(|_| ())
}

/// Whether this API server serves HTTPRoute (the Gateway API CRDs are installed).
pub async fn gateway_api_installed(client: &Client) -> Result<bool, kube::Error> {
    let request = http::Request::get(format!(
        "/apis/{}/{}",
        objects::exposure::GATEWAY_GROUP,
        objects::exposure::GATEWAY_VERSION
    ))
    .body(Vec::new())
    .map_err(kube::Error::HttpError)?;
    match client
        .request::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>(request)
        .await
    {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == objects::exposure::HTTPROUTE_PLURAL)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
