//! `push-operator run`: the controller process. Watches PushClusters and the
//! objects they own, serves `/metrics`, `/healthz`, `/readyz` on the admin
//! port, and stops cleanly on SIGTERM/Ctrl-C.

use crate::controller::rollout::RolloutGate;
use crate::controller::{Context, error_policy, reconcile};
use crate::metrics::Metrics;
use crate::resources::PushCluster;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use push_contract::kube as names;
use push_contract::paths;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings of `push-operator run` (flags or the env names in `push_contract::operator::env`).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Namespaces to watch; empty = all namespaces.
    pub namespaces: Vec<String>,
    pub admin_listen: SocketAddr,
    /// Leader election; `None` = act alone.
    pub lease: Option<LeaseConfig>,
    /// Reporting instance of Events (the pod name).
    pub pod_name: Option<String>,
    /// Between one cluster's operator-caused rollout and the next (controller::rollout).
    pub cluster_rollout_delay: std::time::Duration,
}

/// The leader-election Lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Holder identity (the pod name).
    pub holder: String,
}

/// Parse a comma-separated namespace list (blank entries ignored).
pub fn parse_namespaces(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// The admin router: `/metrics`, `/healthz` (process up), `/readyz` (controller running).
fn admin_app(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            paths::METRICS,
            get(|State(s): State<AdminState>| async move { s.metrics.encode() }),
        )
        .route(paths::HEALTHZ, get(|| async { "ok" }))
        .route(
            paths::READYZ,
            get(|State(s): State<AdminState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(AdminState { metrics, ready })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Run the controller until SIGTERM.
pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.admin_listen).await?;
    tracing::info!(admin = %config.admin_listen, "admin endpoints listening");
    let admin = tokio::spawn(
        axum::serve(listener, admin_app(metrics.clone(), ready.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .into_future(),
    );
    // Standby replicas serve /healthz but stay unready until they lead.
    let lease_api = config.lease.as_ref().map(|lease| {
        (
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
                client.clone(),
                &lease.namespace,
            ),
            lease.clone(),
        )
    });
    let mut elector = lease_api
        .as_ref()
        .map(|(api, lease)| super::leader::Elector::new(api.clone(), &lease.name, &lease.holder));
    if let Some(elector) = &mut elector {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown_signal() => {
                let _ = admin.await;
                return Ok(());
            }
        }
    }
    let leader = metrics.leader.clone();
    let clusters = metrics.clusters.clone();
    let autoscaler = Arc::new(crate::autoscale::Autoscaler::new(
        push_contract::defaults::ADMIN_PORT,
    ));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.pod_name.clone(),
            metrics,
            Some(autoscaler),
        )
        .with_rollout_gate(RolloutGate::new(config.cluster_rollout_delay)),
    );
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|ns| {
        fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
        where
            K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
            K::DynamicType: Default,
        {
            match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        let wc = watcher::Config::default();
        let redis_pods = watcher::Config::default().labels(&format!(
            "{}={},{}={}",
            names::LABEL_COMPONENT,
            names::COMPONENT_REDIS,
            names::LABEL_MANAGED_BY,
            names::MANAGED_BY
        ));
        let controller = Controller::new(api::<PushCluster>(&client, &ns), wc.clone());
        // The clusters' conditions as gauges at every scrape (metrics::ClusterStates).
        clusters.watch(controller.store());
        controller
            .owns(api::<Deployment>(&client, &ns), wc.clone())
            .owns(api::<StatefulSet>(&client, &ns), wc.clone())
            .owns(api::<Service>(&client, &ns), wc.clone())
            .owns(api::<Ingress>(&client, &ns), wc.clone())
            // Redis pods: a primary being deleted is a failover (controller::redis_pods).
            .watches(api::<Pod>(&client, &ns), redis_pods, |pod: Pod| {
                let cluster = pod.labels().get(names::LABEL_INSTANCE)?.clone();
                Some(ObjectRef::<PushCluster>::new(&cluster).within(&pod.namespace()?))
            })
            .graceful_shutdown_on(shutdown_signal())
            .run(reconcile, error_policy, ctx.clone())
            .boxed()
    });
    ready.store(true, Ordering::Relaxed);
    leader.set(1);
    let controllers = futures::stream::select_all(controllers).for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
            Err(e) => tracing::warn!(error = %e, "controller error"),
        }
    });
    let lost = async {
        match &mut elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    let (outcome, stopped_acting) = tokio::select! {
        _ = controllers => (Ok(()), true),
        // Never act without the Lease: stop, and let the pod restart as a standby.
        lost = lost => (lost, false),
    };
    if stopped_acting && let Some(elector) = &mut elector {
        elector.release().await;
    }
    ready.store(false, Ordering::Relaxed);
    leader.set(0);
    admin.abort();
    tracing::info!("stopped");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    #[test]
    fn namespaces_parse() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("empty = all", "", &[]),
            ("one", "team-a", &["team-a"]),
            ("spaces and blanks", " a, ,b ,", &["a", "b"]),
        ];
        for (case, input, want) in cases {
            assert_eq!(parse_namespaces(input), *want, "case {case:?}");
        }
    }

    #[tokio::test]
    async fn admin_endpoints() {
        let metrics = Arc::new(Metrics::default());
        let ready = Arc::new(AtomicBool::new(false));
        let app = admin_app(metrics, ready.clone());
        let get = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let status = |r: axum::response::Response| r.status();
        assert_eq!(
            status(app.clone().oneshot(get(paths::HEALTHZ)).await.expect("ok")),
            StatusCode::OK
        );
        assert_eq!(
            status(app.clone().oneshot(get(paths::READYZ)).await.expect("ok")),
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            status(app.clone().oneshot(get(paths::READYZ)).await.expect("ok")),
            StatusCode::OK
        );
        let body = app
            .oneshot(get(paths::METRICS))
            .await
            .expect("ok")
            .into_body();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        assert!(
            String::from_utf8_lossy(&bytes).contains("pushcluster_operator_reconcile_runs_total")
        );
    }
}
