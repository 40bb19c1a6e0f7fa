//! `push-loadgen`: an Engine.IO 4 / socket.io v5 load generator speaking the
//! protocol directly over tokio (WebSocket and long-polling), spread over
//! several worker processes, comparing push-server with the Node reference.

mod cli;
mod client;
mod fleet;
mod launch;
mod procfs;
mod protocol;
mod publisher;
mod report;
mod scenario;
mod spec;
mod stats;
mod suite;
mod worker;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;

use cli::{Cli, Cmd, FanoutArgs, ReportArgs, ServeArgs, SuiteArgs, secs};
use launch::{Cluster, LaunchConfig};
use scenario::fanout::FanoutConfig;
use scenario::polling::PollingConfig;
use spec::Transport;
use suite::{SuiteConfig, SuiteResult};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Worker { spec } => Ok(worker::main(&spec)?),
        Cmd::Report(args) => report(&args),
        Cmd::Suite(args) => runtime()?.block_on(suite(*args)),
        Cmd::Fanout(args) => runtime()?.block_on(fanout(args)),
        Cmd::Serve(args) => runtime()?.block_on(serve(args)),
    }
}

/// The coordinator: one thread is plenty (the workers do the client work).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn suite(a: SuiteArgs) -> anyhow::Result<()> {
    let cfg = SuiteConfig {
        launch: LaunchConfig {
            kind: a.server,
            nodes: 1,
            push_server_bin: a.push_server_bin,
            node_script: a.node_script,
            server_cpus: (!a.server_cpus.is_empty()).then_some(a.server_cpus),
            api_token: a.api_token,
            redis: a.redis.with_redis,
            history_max_messages: a.redis.history_max_messages,
            redis_replicas: a.redis.redis_replicas,
        },
        scenarios: a.scenarios,
        idle_sizes: a.idle_sizes,
        idle_transports: a.idle_transports,
        idle_hold: secs(a.idle_hold_secs),
        connect_rate: a.connect_rate,
        fanout: FanoutConfig {
            clients: a.fanout_clients,
            rooms: a.fanout_rooms,
            transport: Transport::Websocket,
            connect_rate: a.connect_rate,
            rates: a.fanout_rates,
            step: secs(a.step_secs),
            grace: secs(5),
            fill_per_room: 0,
        },
        cross_nodes: a.cross_nodes,
        cross: FanoutConfig {
            clients: a.cross_clients,
            rooms: a.cross_rooms,
            transport: Transport::Websocket,
            connect_rate: a.connect_rate,
            rates: a.cross_rates,
            step: secs(a.cross_secs),
            grace: secs(5),
            fill_per_room: a.cross_fill_per_room,
        },
        polling: PollingConfig {
            sizes: a.polling_sizes,
            rooms: a.polling_rooms,
            connect_rate: a.connect_rate / 2.0,
            msgs_per_client_per_s: a.polling_msgs_per_client_per_s,
            step: secs(a.step_secs),
            grace: secs(5),
        },
    };
    let result = suite::run(&cfg).await?;
    let json = serde_json::to_string_pretty(&result)?;
    std::fs::write(&a.out, json).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

async fn fanout(a: FanoutArgs) -> anyhow::Result<()> {
    let publish_urls = match a.publish_url {
        Some(url) => vec![url],
        None => a.urls.clone(),
    };
    let cluster = Cluster::attach(a.urls, publish_urls, a.pids, a.api_token);
    let cfg = FanoutConfig {
        clients: a.clients,
        rooms: a.rooms,
        transport: a.transport,
        connect_rate: a.connect_rate,
        rates: a.rates,
        step: secs(a.step_secs),
        grace: secs(5),
        fill_per_room: 0,
    };
    let result = scenario::fanout::run(&cluster, &cfg, 0).await?;
    let json = serde_json::to_string_pretty(&result)?;
    match a.out {
        Some(path) => {
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => writeln!(std::io::stdout(), "{json}").context("writing to stdout")?,
    }
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt as _;
    let cfg = LaunchConfig {
        kind: a.server,
        nodes: a.nodes,
        push_server_bin: a.push_server_bin,
        node_script: a.node_script,
        server_cpus: (!a.server_cpus.is_empty()).then_some(a.server_cpus),
        api_token: a.api_token,
        redis: a.redis.with_redis,
        history_max_messages: a.redis.history_max_messages,
        redis_replicas: a.redis.redis_replicas,
    };
    let cluster = Cluster::start(&cfg).await?;
    let line = serde_json::json!({
        "urls": cluster.urls,
        "publishUrls": cluster.publish_urls,
        "pids": cluster.pids,
        "contract": launch::node_config("", None, ""),
        "benchEvent": publisher::BENCH_EVENT,
        "roomNames": [spec::room_name(0), spec::room_name(1)],
    });
    writeln!(std::io::stdout(), "{line}").context("writing to stdout")?;
    // Hold the servers until whoever started us closes our stdin.
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    drop(cluster);
    Ok(())
}

fn report(a: &ReportArgs) -> anyhow::Result<()> {
    let read = |path: &std::path::Path| -> anyhow::Result<SuiteResult> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a suite result", path.display()))
    };
    let machine = match &a.machine {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => String::new(),
    };
    let markdown = report::render(&read(&a.push)?, &read(&a.node)?, &machine);
    write!(std::io::stdout(), "{markdown}").context("writing to stdout")?;
    Ok(())
}
