//! Why local mode stops.

use std::path::PathBuf;

use super::{child, nginx, plan, watch};

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
