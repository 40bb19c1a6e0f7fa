//! Local mode: `push-operator local -f FILE` runs the PushCluster in FILE on this
//! machine from the same validate step and Deployment env the controller uses:
//! a redis-server (managed Redis), `replicas` push-server processes, and a real nginx
//! in front doing the sticky routing the manifest asks for, supervised like a
//! ReplicaSet (restart with backoff, manifest edits applied live, scale-in by drain).
//!
//! Modules: [`plan`] (pure decisions), [`nginx`] (config rendering + process),
//! [`redis`], [`secrets`], [`watch`] (the manifest file), [`desired`] (the manifest
//! resolved for this machine), [`supervisor`] (the loop), [`node`] (one process and its restarts), [`child`],
//! [`ports`].

pub mod child;
pub mod desired;
pub mod nginx;
pub mod node;
pub mod plan;
pub mod ports;
pub mod redis;
pub mod secrets;
pub mod state_file;
pub mod supervisor;
pub mod watch;

use std::path::PathBuf;

pub use supervisor::{Control, Handle, NodeStatus};

/// Everything that stops local mode, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Manifest(#[from] watch::ManifestError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Nginx(#[from] nginx::NginxError),
    #[error(transparent)]
    Child(#[from] child::ChildError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "push-server binary not found: {0} (build it with `cargo build -p push-server` or set PUSH_SERVER_BIN)"
    )]
    ServerBinary(PathBuf),
    #[error("{0} did not become ready within {1} s (logs in {2})")]
    NotReady(String, u64, PathBuf),
}

/// Options of `push-operator local`.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    /// Front door port; `None` = 8080 when free, else any free port.
    pub port: Option<u16>,
    pub secrets_dir: PathBuf,
    /// `None` = PUSH_SERVER_BIN, else `push-server` next to this executable.
    pub server_bin: Option<PathBuf>,
    /// Where to write a JSON snapshot (pids, ports) for tests and tools.
    pub state_file: Option<PathBuf>,
    /// Tests only: render nginx without any stickiness.
    pub no_affinity: bool,
}

/// Env var naming the push-server binary.
pub const SERVER_BIN_ENV: &str = "PUSH_SERVER_BIN";

/// The push-server binary: explicit, PUSH_SERVER_BIN, or next to this executable.
pub fn server_binary(explicit: Option<PathBuf>) -> Result<PathBuf, LocalError> {
    let path = explicit
        .or_else(|| std::env::var_os(SERVER_BIN_ENV).map(PathBuf::from))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("push-server")))
        })
        .unwrap_or_else(|| PathBuf::from("push-server"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LocalError::ServerBinary(path))
    }
}

/// Runs until Ctrl-C or SIGTERM, then stops every process it started.
pub async fn run(options: Options) -> Result<(), LocalError> {
    let binary = server_binary(options.server_bin.clone())?;
    let workdir = std::env::temp_dir().join(format!("pushcluster-local-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|source| LocalError::Io {
        what: format!("creating {}", workdir.display()),
        source,
    })?;
    tracing::info!(workdir = %workdir.display(), "logs and nginx config live here");
    let mut autoscaling = crate::autoscale::local::ManifestAutoscaling::new(&options.manifest);
    let (supervisor, handle) = supervisor::Supervisor::start(options, binary, workdir.clone())
        .await
        .inspect_err(|_| {
            // Only when nothing was logged there yet (a bad manifest): logs are kept.
            let _ = std::fs::remove_dir(&workdir);
        })?;
    // spec.autoscaling: the controller's decision over these processes (autoscale::local);
    // it scales through `handle` like `Control::Scale`, and stops with the supervisor.
    let autoscaler = tokio::spawn(crate::autoscale::local::run(
        move || autoscaling.current(),
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
