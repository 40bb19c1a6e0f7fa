//! Thin entry point: parse, set up logging, bind, run.

use std::process::ExitCode;

use clap::Parser;
use push_server::{Config, Listeners, Shutdown, config::Cli, run, telemetry};
use tokio::net::TcpListener;

// The global allocator (bench/results/2026-11-29.md, "Allocator: memory after a spike").
// Default: jemalloc with a background thread that returns freed pages to the OS within
// about a second of going unused, so RSS falls back after a spike of connections or a
// large broadcast even when the node goes idle (glibc malloc kept all of it). Features:
// `mimalloc` (wins when both are on), `--no-default-features` for the system allocator.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): purge unused dirty pages from a background thread
/// (not only on the next allocation) over 1 s instead of 10 s.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // rustls (TLS to Redis) needs one process-wide crypto provider: ring, as the
    // operator's (an error only means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("push-server: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&config.log, config.log_format) {
        eprintln!("push-server: {e}");
        return ExitCode::from(2);
    }
    tracing::info!("effective configuration:\n{config}");
    let (client, admin) = match (
        TcpListener::bind(config.listen).await,
        TcpListener::bind(config.admin_listen).await,
    ) {
        (Ok(client), Ok(admin)) => (client, admin),
        (Err(e), _) => return fail(&format!("cannot listen on {}: {e}", config.listen)),
        (_, Err(e)) => return fail(&format!("cannot listen on {}: {e}", config.admin_listen)),
    };
    if let (Ok(client), Ok(admin)) = (client.local_addr(), admin.local_addr()) {
        tracing::info!(%client, %admin, "listening");
    }
    let listeners = Listeners { client, admin };
    if let Some(path) = &config.address_file
        && let Err(e) = listeners.write_address_file(path)
    {
        return fail(&format!("cannot write {}: {e}", path.display()));
    }
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.on_signals() {
        return fail(&format!("cannot install signal handlers: {e}"));
    }
    match run(listeners, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    tracing::error!("{message}");
    eprintln!("push-server: {message}");
    ExitCode::FAILURE
}
