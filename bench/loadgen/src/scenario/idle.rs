//! Idle: open N connections (WebSocket or long-polling) at a controlled rate, hold
//! them, and measure the server's RSS per connection once it has settled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ScenarioError, settled_rss_kib, template};
use crate::fleet::{Fleet, plan_workers};
use crate::launch::Cluster;
use crate::spec::Transport;

#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub connections: usize,
    pub transport: Transport,
    pub connect_rate: f64,
    pub rooms: usize,
    /// How long the connections are held after settling (they must all stay open).
    pub hold: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleResult {
    pub requested: usize,
    /// Results written before the field existed were WebSocket-only.
    #[serde(default)]
    pub transport: Transport,
    pub connected: usize,
    pub failed: usize,
    pub baseline_rss_kib: u64,
    pub rss_kib: u64,
    /// (RSS − baseline) / connected, KiB.
    pub rss_per_connection_kib: f64,
    pub open_after_hold: usize,
    pub connect_seconds: f64,
    pub first_errors: Vec<String>,
}

/// RSS growth per connection in KiB; 0 when nothing connected.
pub fn per_connection_kib(baseline: u64, loaded: u64, connected: usize) -> f64 {
    if connected == 0 {
        return 0.0;
    }
    loaded.saturating_sub(baseline) as f64 / connected as f64
}

pub async fn run(cluster: &Cluster, cfg: &IdleConfig) -> Result<IdleResult, ScenarioError> {
    let baseline = settled_rss_kib(&cluster.pids, Duration::from_secs(10)).await?;
    let mut fleet = Fleet::new();
    let started = std::time::Instant::now();
    let specs = plan_workers(
        &template(cluster, cfg.transport, cfg.rooms, cfg.connect_rate),
        0,
        cfg.connections,
        0,
    );
    let outcome = fleet.add(specs).await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    let rss = settled_rss_kib(&cluster.pids, Duration::from_secs(30)).await?;
    tokio::time::sleep(cfg.hold).await;
    let report = fleet.report().await?;
    let mut first_errors = outcome.first_errors;
    first_errors.extend(report.first_errors);
    first_errors.truncate(8);
    Ok(IdleResult {
        requested: cfg.connections,
        transport: cfg.transport,
        connected: outcome.ok,
        failed: outcome.failed,
        baseline_rss_kib: baseline,
        rss_kib: rss,
        rss_per_connection_kib: per_connection_kib(baseline, rss, outcome.ok),
        open_after_hold: report.open,
        connect_seconds,
        first_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_table() {
        let cases = [
            ("normal", 1_000, 11_000, 1_000, 10.0),
            ("nothing connected", 1_000, 2_000, 0, 0.0),
            ("rss shrank below baseline", 5_000, 4_000, 10, 0.0),
        ];
        for (name, base, loaded, n, want) in cases {
            assert_eq!(per_connection_kib(base, loaded, n), want, "case {name}");
        }
    }
}
