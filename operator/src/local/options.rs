//! What `push-operator local` is asked to run, and which push-server binary runs it.

use std::path::PathBuf;

use super::error::LocalError;

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
