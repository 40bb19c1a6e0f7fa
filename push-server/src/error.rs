//! Error types that cross module boundaries.

use std::path::PathBuf;

/// Refusing to start: each variant names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} needs {1} to be set")]
    Requires(&'static str, &'static str),
    #[error("{0} and {1} are mutually exclusive: set one")]
    Exclusive(&'static str, &'static str),
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("serving {listener} failed: {source}")]
    Serve {
        listener: &'static str,
        source: std::io::Error,
    },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("socket.io adapter initialisation failed: {0}")]
    Adapter(String),
}
