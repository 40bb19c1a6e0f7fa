//! The benchmark scenarios. Each takes running servers ([`Cluster`]) and
//! returns a serializable result; `suite` runs them all and `report` turns
//! two suites' results into the side-by-side table.

pub mod fanout;
pub mod idle;
pub mod polling;

use std::time::{Duration, Instant};

use crate::fleet::{Fleet, FleetError, FleetReport};
use crate::launch::Cluster;
use crate::procfs::{CpuTime, cpu_time};
use crate::scenario::fanout::FanoutStep;
use crate::spec::{Transport, WorkerSpec};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    #[error("publisher: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot read the RSS of server pids {0:?}")]
    Rss(Vec<u32>),
}

/// Worker template for `cluster`'s nodes.
pub fn template(
    cluster: &Cluster,
    transport: Transport,
    rooms: usize,
    connect_rate: f64,
) -> WorkerSpec {
    WorkerSpec {
        urls: cluster.urls.clone(),
        socket_path: push_contract::paths::SOCKET_IO.to_string(),
        transport,
        first_client: 0,
        clients: 0,
        rooms,
        sources: Vec::new(),
        connect_rate,
        subscribe_event: push_contract::socket::SUBSCRIBE.to_string(),
    }
}

/// Polls the workers until `step` has `expected` deliveries or `grace` has
/// passed since the call; returns the last report.
pub async fn await_deliveries(
    fleet: &mut Fleet,
    step: u32,
    expected: u64,
    grace: Duration,
) -> Result<FleetReport, ScenarioError> {
    let deadline = Instant::now() + grace;
    loop {
        let report = fleet.report().await?;
        if report.received(step) >= expected || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls RSS until it moves less than 1% over three readings a second apart
/// (or `max_wait` passes); returns the last reading in KiB.
pub async fn settled_rss_kib(pids: &[u32], max_wait: Duration) -> Result<u64, ScenarioError> {
    let deadline = Instant::now() + max_wait;
    let mut readings: Vec<u64> = Vec::new();
    loop {
        let now = crate::procfs::rss_kib(pids).ok_or_else(|| ScenarioError::Rss(pids.to_vec()))?;
        readings.push(now);
        if let [.., a, _, c] = readings.as_slice()
            && readings.len() >= 3
            && a.abs_diff(*c) * 100 <= *c
        {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// CPU use of the servers and of the generator over a measured window.
pub struct CpuWindow {
    started: Instant,
    server: CpuTime,
    generator: CpuTime,
    redis: CpuTime,
}

impl CpuWindow {
    pub fn start(cluster: &Cluster, fleet: &Fleet) -> CpuWindow {
        CpuWindow {
            started: Instant::now(),
            server: cpu_time(&cluster.pids),
            generator: cpu_time(&fleet.generator_pids()),
            redis: cpu_time(&redis_pids(cluster)),
        }
    }

    /// Writes the CPU use since `start` into `step`.
    pub fn finish(&self, cluster: &Cluster, fleet: &Fleet, step: &mut FanoutStep) {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let server = cpu_time(&cluster.pids).since(self.server);
        let generator = cpu_time(&fleet.generator_pids()).since(self.generator);
        let redis = cpu_time(&redis_pids(cluster)).since(self.redis);
        step.server_cpu_pct = 100.0 * server.total() / wall;
        step.redis_cpu_pct = 100.0 * redis.total() / wall;
        step.generator_cpu_pct = 100.0 * generator.total() / wall;
        step.server_cpu_us_per_delivery = per_delivery_us(server.total(), step.received);
        step.server_user_us_per_delivery = per_delivery_us(server.user, step.received);
    }
}

fn redis_pids(cluster: &Cluster) -> Vec<u32> {
    cluster.redis_pid.into_iter().collect()
}

/// Server CPU time per delivered message, µs: a throughput-per-core figure
/// that holds even when the generator, not the server, limits a step.
pub fn per_delivery_us(server_cpu_seconds: f64, received: u64) -> f64 {
    if received == 0 {
        return 0.0;
    }
    server_cpu_seconds * 1e6 / received as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_delivery_table() {
        let cases = [
            ("normal", 0.5, 100_000, 5.0),
            ("nothing delivered", 1.0, 0, 0.0),
        ];
        for (name, cpu, received, want) in cases {
            assert_eq!(per_delivery_us(cpu, received), want, "case {name}");
        }
    }
}
