//! Long-polling: how many polling-only clients one node serves with p99
//! publish→delivery under 1 s. Clients are added in steps; at each size every
//! client gets `msgs_per_client_per_s` stamped messages for a while.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CpuWindow, ScenarioError, await_deliveries, fanout, template};
use crate::fleet::{ConnectOutcome, Fleet, plan_workers};
use crate::launch::Cluster;
use crate::publisher::Publisher;
use crate::spec::Transport;

/// The target: p99 delivery under this.
pub const P99_LIMIT_MS: f64 = 1_000.0;

#[derive(Debug, Clone)]
pub struct PollingConfig {
    /// Total clients at each step, increasing.
    pub sizes: Vec<usize>,
    pub rooms: usize,
    pub connect_rate: f64,
    pub msgs_per_client_per_s: f64,
    pub step: Duration,
    pub grace: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollingStep {
    pub clients: usize,
    pub connected: usize,
    pub failed: usize,
    pub rss_kib: u64,
    pub fanout: fanout::FanoutStep,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollingResult {
    pub steps: Vec<PollingStep>,
    /// Largest size whose step passed (every client connected, p99 < 1 s, no loss).
    pub max_clients_passing: usize,
    pub first_errors: Vec<String>,
}

/// A polling step passes when every client connected and deliveries were
/// complete with p99 under the limit.
pub fn step_passes(requested: usize, connected: usize, lost: u64, p99_ms: f64) -> bool {
    connected == requested && lost == 0 && p99_ms < P99_LIMIT_MS
}

pub async fn run(
    cluster: &Cluster,
    cfg: &PollingConfig,
    first_step: u32,
) -> Result<PollingResult, ScenarioError> {
    let mut fleet = Fleet::new();
    let publisher = Publisher::new(&cluster.publish_urls[0], &cluster.api_token)?;
    let mut connect = ConnectOutcome::default();
    let mut result = PollingResult::default();
    let rate = cfg.rooms as f64 * cfg.msgs_per_client_per_s;
    for (i, &size) in cfg.sizes.iter().enumerate() {
        let step = first_step + i as u32;
        let have = connect.ok + connect.failed;
        if size > have {
            let tpl = template(cluster, Transport::Polling, cfg.rooms, cfg.connect_rate);
            let more = fleet
                .add(plan_workers(&tpl, have, size - have, fleet.workers()))
                .await?;
            connect.ok += more.ok;
            connect.failed += more.failed;
            for (r, m) in more.per_room.iter().enumerate() {
                if r < connect.per_room.len() {
                    connect.per_room[r] += m;
                } else {
                    connect.per_room.push(*m);
                }
            }
            result.first_errors.extend(more.first_errors);
        }
        let cpu = CpuWindow::start(cluster, &fleet);
        let publish = publisher.run(step, cfg.rooms, rate, cfg.step).await;
        let expected = publish.expected_deliveries(&connect.per_room);
        let report = await_deliveries(&mut fleet, step, expected, cfg.grace).await?;
        let mut summary = fanout::summarise(rate, step, &publish, &connect, &report);
        cpu.finish(cluster, &fleet, &mut summary);
        let passed = step_passes(size, connect.ok, summary.lost, summary.latency.p99_ms);
        eprintln!(
            "polling {size} clients ({} connected): p99 {:.1} ms, lost {}, {}",
            connect.ok,
            summary.latency.p99_ms,
            summary.lost,
            if passed { "pass" } else { "FAIL" }
        );
        result.steps.push(PollingStep {
            clients: size,
            connected: connect.ok,
            failed: connect.failed,
            rss_kib: crate::procfs::rss_kib(&cluster.pids).unwrap_or(0),
            fanout: summary,
            passed,
        });
        result.first_errors.extend(report.first_errors);
        if !passed {
            break;
        }
        result.max_clients_passing = size;
    }
    result.first_errors.truncate(8);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_passes_table() {
        let cases = [
            ("all good", 100, 100, 0, 20.0, true),
            ("a client failed to connect", 100, 99, 0, 20.0, false),
            ("a delivery lost", 100, 100, 1, 20.0, false),
            ("p99 at the limit", 100, 100, 0, 1000.0, false),
        ];
        for (name, req, conn, lost, p99, want) in cases {
            assert_eq!(step_passes(req, conn, lost, p99), want, "case {name}");
        }
    }
}
