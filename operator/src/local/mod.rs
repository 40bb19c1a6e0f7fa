//! Local mode: `push-operator local -f FILE` runs the PushCluster in FILE on this
//! machine from the same validate step and Deployment env the controller uses: the
//! managed Redis (one redis-server, or with `spec.redis.managed.replicas` > 1 a primary,
//! its replicas and three Sentinels that fail it over), `replicas` push-server processes,
//! and a real nginx in front doing the sticky routing the manifest asks for, supervised
//! like a ReplicaSet (restart with backoff, manifest edits applied live, scale-in by drain).
//!
//! Modules: [`plan`] (pure decisions), [`nginx`] (config rendering + process),
//! [`redis_topology`] (the Redis processes, pure), [`redis`] (those processes), [`resp`]
//! (their wire protocol, for checks), [`secrets`], [`watch`] (the manifest file, through
//! the operator's one front door), [`resolved`] (the manifest resolved for this machine),
//! [`supervisor`] (the loop), [`node`] (one process and its restarts), [`child`],
//! [`ports`], [`autoscale`] (the controller's connection autoscaling over these
//! processes), [`options`], [`error`].

pub mod autoscale;
pub mod child;
pub mod error;
pub mod nginx;
pub mod node;
pub mod options;
pub mod plan;
pub mod ports;
pub mod redis;
pub mod redis_topology;
pub mod resolved;
pub mod resp;
pub mod secrets;
pub mod state_file;
pub mod supervisor;
pub mod watch;

use error::LocalError;
use options::{Options, server_binary};

/// Runs until Ctrl-C or SIGTERM, then stops every process it started.
pub async fn run(options: Options) -> Result<(), LocalError> {
    let binary = server_binary(options.server_bin.clone())?;
    let workdir = std::env::temp_dir().join(format!("pushcluster-local-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|source| LocalError::Io {
        what: format!("creating {}", workdir.display()),
        source,
    })?;
    tracing::info!(workdir = %workdir.display(), "logs and nginx config live here");
    let (supervisor, handle) = supervisor::Supervisor::start(options, binary, workdir.clone())
        .await
        .inspect_err(|_| {
            // Only when nothing was logged there yet (a bad manifest): logs are kept.
            let _ = std::fs::remove_dir(&workdir);
        })?;
    // spec.autoscaling: the controller's decision over these processes ([`autoscale`]),
    // fed the spec the supervisor last applied; it scales through `handle` like
    // `Control::Scale`, and stops with the supervisor.
    let autoscaling = handle.autoscaling.clone();
    let autoscaler = tokio::spawn(autoscale::run(
        move || autoscaling.borrow().clone(),
        handle,
        std::future::pending::<()>(),
    ));
    let result = supervisor.run(shutdown_signal()).await;
    autoscaler.abort();
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    result
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
