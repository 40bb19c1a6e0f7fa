//! Thin entry point: parse, set up logging, bind, run.

use std::process::ExitCode;

use clap::Parser;
use push_server::{Config, Listeners, Shutdown, config::Cli, run, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
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
