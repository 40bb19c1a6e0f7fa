//! Fan-out (and cross-node, the same over several nodes): N clients in R
//! rooms, publishes at a stepped rate through the publish API of node 0,
//! delivered messages/s, publish→delivery latency and losses per step.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CpuWindow, ScenarioError, await_deliveries, template};
use crate::fleet::{ConnectOutcome, Fleet, FleetReport, plan_workers};
use crate::launch::Cluster;
use crate::publisher::{PublishOutcome, Publisher};
use crate::spec::Transport;
use crate::stats::Latency;

/// A step is overloaded past this p99; later (faster) steps are skipped.
pub const OVERLOAD_P99_MS: f64 = 250.0;
/// ... or past this share of lost deliveries.
pub const OVERLOAD_LOSS: f64 = 0.01;
/// ... or when less than this share of the step's publish rate was achieved.
pub const OVERLOAD_RATE_ACHIEVED: f64 = 0.95;

#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub clients: usize,
    pub rooms: usize,
    pub transport: Transport,
    pub connect_rate: f64,
    /// Publishes per second, one step each, in order.
    pub rates: Vec<f64>,
    pub step: Duration,
    /// How long to wait for the tail of deliveries after the last publish.
    pub grace: Duration,
    /// Messages published to every room before any client connects (history on: the
    /// rooms' histories start full instead of filling during the steps).
    pub fill_per_room: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutStep {
    pub rate: f64,
    pub achieved_rate: f64,
    pub accepted: u64,
    pub accepted_per_room: Vec<u64>,
    pub publish_failed: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    /// Deliveries per second, from the first publish to the last delivery.
    pub delivered_per_s: f64,
    pub latency: Latency,
    /// Latency of the clients on each node (node 0 takes the publishes).
    pub latency_by_node: Vec<Latency>,
    pub overloaded: bool,
    pub first_error: Option<String>,
    /// CPU use over the step (publishing + tail), % of one CPU: near 100 on
    /// the generator side means the generator, not the server, set the limit.
    pub server_cpu_pct: f64,
    pub generator_cpu_pct: f64,
    /// Server CPU time per delivered message, µs.
    pub server_cpu_us_per_delivery: f64,
    /// The user-space part of it (the rest is kernel time, mostly TCP on loopback).
    #[serde(default)]
    pub server_user_us_per_delivery: f64,
    /// CPU use of the nodes' redis-server over the step, % of one CPU (0 without one):
    /// which of Redis and the nodes saturates first.
    #[serde(default)]
    pub redis_cpu_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    pub nodes: usize,
    pub clients: usize,
    pub connected: usize,
    pub rooms: usize,
    /// Connected clients in each room.
    pub members_per_room: Vec<u64>,
    pub steps: Vec<FanoutStep>,
    /// Publishes accepted by the fill before the steps (`FanoutConfig::fill_per_room`).
    #[serde(default)]
    pub filled: u64,
    pub dropped: usize,
    pub unstamped: u64,
    pub first_errors: Vec<String>,
}

impl FanoutResult {
    /// The fastest step that was not overloaded.
    pub fn best(&self) -> Option<&FanoutStep> {
        self.steps
            .iter()
            .filter(|s| !s.overloaded)
            .max_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s))
    }

    /// The step run at `rate` publishes/s, to compare two servers under the same load.
    pub fn at_rate(&self, rate: f64) -> Option<&FanoutStep> {
        self.steps.iter().find(|s| (s.rate - rate).abs() < 1e-9)
    }
}

/// Whether a step's figures count as overloaded: p99 or losses too high, or the rate
/// not achieved — the publisher waits for answers (at most `MAX_IN_FLIGHT` at once)
/// and stamps a message when it sends it, so a cluster slow to answer holds the rate
/// down before its backlog shows in the latency.
pub fn is_overloaded(rate: f64, achieved: f64, expected: u64, received: u64, p99_ms: f64) -> bool {
    let lost = expected.saturating_sub(received) as f64;
    p99_ms > OVERLOAD_P99_MS
        || (expected > 0 && lost / expected as f64 > OVERLOAD_LOSS)
        || achieved < OVERLOAD_RATE_ACHIEVED * rate
}

/// Summarises one step from what was published and what the clients got.
pub fn summarise(
    rate: f64,
    step: u32,
    publish: &PublishOutcome,
    connect: &ConnectOutcome,
    report: &FleetReport,
) -> FanoutStep {
    let expected = publish.expected_deliveries(&connect.per_room);
    let (received, latency, latency_by_node, last_ns) = match report.steps.get(&step) {
        Some(d) => (
            d.received,
            Latency::of(&d.latency_us),
            d.latency_us_by_node.values().map(Latency::of).collect(),
            d.last_received_ns,
        ),
        None => (0, Latency::default(), Vec::new(), 0),
    };
    let window_s = (last_ns.saturating_sub(publish.start_ns) as f64 / 1e9)
        .max(publish.elapsed_s)
        .max(1e-9);
    FanoutStep {
        rate,
        achieved_rate: publish.achieved_rate,
        accepted: publish.accepted,
        accepted_per_room: publish.accepted_per_room.clone(),
        publish_failed: publish.failed,
        expected,
        received,
        lost: expected.saturating_sub(received),
        delivered_per_s: received as f64 / window_s,
        overloaded: is_overloaded(
            rate,
            publish.achieved_rate,
            expected,
            received,
            latency.p99_ms,
        ),
        latency,
        latency_by_node,
        first_error: publish.first_error.clone(),
        server_cpu_pct: 0.0,
        generator_cpu_pct: 0.0,
        server_cpu_us_per_delivery: 0.0,
        server_user_us_per_delivery: 0.0,
        redis_cpu_pct: 0.0,
    }
}

/// Publishes at which the fill goes: paced, so that it measures nothing and overloads
/// nobody, then the steps start from full histories.
const FILL_RATE: f64 = 4_000.0;

/// Publishes `fill_per_room` messages to every room before clients connect (nobody
/// receives them; with history on they fill the rooms' histories). Returns the accepted.
async fn fill(publisher: &Publisher, cfg: &FanoutConfig) -> u64 {
    if cfg.fill_per_room == 0 {
        return 0;
    }
    let total = cfg.fill_per_room * cfg.rooms.max(1) as u64;
    let outcome = publisher
        .run(
            0,
            cfg.rooms,
            FILL_RATE,
            Duration::from_secs_f64(total as f64 / FILL_RATE),
        )
        .await;
    eprintln!(
        "fill: {} of {total} publishes accepted ({:.0}/s){}",
        outcome.accepted,
        outcome.achieved_rate,
        outcome
            .first_error
            .as_deref()
            .map(|e| format!(", first error: {e}"))
            .unwrap_or_default()
    );
    outcome.accepted
}

pub async fn run(
    cluster: &Cluster,
    cfg: &FanoutConfig,
    first_step: u32,
) -> Result<FanoutResult, ScenarioError> {
    let publisher = Publisher::new(&cluster.publish_urls[0], &cluster.api_token)?;
    let filled = fill(&publisher, cfg).await;
    let mut fleet = Fleet::new();
    let specs = plan_workers(
        &template(cluster, cfg.transport, cfg.rooms, cfg.connect_rate),
        0,
        cfg.clients,
        0,
    );
    let connect = fleet.add(specs).await?;
    let mut steps = Vec::new();
    let mut last_report = None;
    for (i, &rate) in cfg.rates.iter().enumerate() {
        let step = first_step + i as u32;
        let cpu = CpuWindow::start(cluster, &fleet);
        let publish = publisher.run(step, cfg.rooms, rate, cfg.step).await;
        let expected = publish.expected_deliveries(&connect.per_room);
        let report = await_deliveries(&mut fleet, step, expected, cfg.grace).await?;
        let mut summary = summarise(rate, step, &publish, &connect, &report);
        cpu.finish(cluster, &fleet, &mut summary);
        let overloaded = summary.overloaded;
        eprintln!(
            "fanout step {step}: {rate}/s -> {:.0} deliveries/s, p99 {:.2} ms, lost {}, cpu server {:.0}% generator {:.0}%",
            summary.delivered_per_s,
            summary.latency.p99_ms,
            summary.lost,
            summary.server_cpu_pct,
            summary.generator_cpu_pct
        );
        steps.push(summary);
        last_report = Some(report);
        if overloaded {
            break;
        }
    }
    let (dropped, unstamped, mut first_errors) = match last_report {
        Some(r) => (r.dropped, r.unstamped, r.first_errors),
        None => (0, 0, Vec::new()),
    };
    first_errors.extend(connect.first_errors);
    first_errors.truncate(8);
    Ok(FanoutResult {
        nodes: cluster.urls.len(),
        clients: cfg.clients,
        connected: connect.ok,
        rooms: cfg.rooms,
        members_per_room: connect.per_room.clone(),
        steps,
        filled,
        dropped,
        unstamped,
        first_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_table() {
        let cases = [
            ("healthy", 100.0, 1000, 1000, 5.0, false),
            ("slow p99", 100.0, 1000, 1000, 300.0, true),
            ("2% lost", 100.0, 1000, 980, 5.0, true),
            ("0.5% lost is tolerated", 100.0, 1000, 995, 5.0, false),
            ("nothing expected", 100.0, 0, 0, 0.0, false),
            ("rate held down to 60 %", 60.0, 1000, 1000, 5.0, true),
            (
                "96 % of the rate is tolerated",
                96.0,
                1000,
                1000,
                5.0,
                false,
            ),
        ];
        for (name, achieved, expected, received, p99, want) in cases {
            assert_eq!(
                is_overloaded(100.0, achieved, expected, received, p99),
                want,
                "case {name}"
            );
        }
    }

    #[test]
    fn best_skips_overloaded_steps() {
        let step = |d, overloaded| FanoutStep {
            delivered_per_s: d,
            overloaded,
            ..Default::default()
        };
        let result = FanoutResult {
            steps: vec![step(10.0, false), step(30.0, false), step(50.0, true)],
            ..Default::default()
        };
        assert_eq!(result.best().map(|s| s.delivered_per_s), Some(30.0));
        assert!(result.at_rate(7.0).is_none());
    }
}
