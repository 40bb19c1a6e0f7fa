//! `push-loadgen suite`: every scenario against one server kind, each on a
//! fresh set of server processes, results as one JSON document.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::launch::{Cluster, LaunchConfig, ServerKind};
use crate::scenario::fanout::{FanoutConfig, FanoutResult};
use crate::scenario::idle::{IdleConfig, IdleResult};
use crate::scenario::polling::{PollingConfig, PollingResult};
use crate::scenario::{ScenarioError, fanout, idle, polling};
use crate::spec::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Idle,
    Fanout,
    Cross,
    Polling,
}

#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub launch: LaunchConfig,
    pub scenarios: Vec<Scenario>,
    pub idle_sizes: Vec<usize>,
    pub idle_transports: Vec<Transport>,
    pub idle_hold: Duration,
    pub connect_rate: f64,
    pub fanout: FanoutConfig,
    pub cross_nodes: usize,
    pub cross: FanoutConfig,
    pub polling: PollingConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteResult {
    pub server: ServerKind,
    /// Whether single-node scenarios ran with a redis-server too (`--with-redis`, or history).
    #[serde(default)]
    pub redis: bool,
    /// push-server's history, messages kept per room; 0 = off.
    #[serde(default)]
    pub history_max_messages: u32,
    /// Replicas of the redis-server a 202 waited for one of (0: none).
    #[serde(default)]
    pub redis_replicas: u32,
    pub idle: Vec<IdleResult>,
    pub fanout: Option<FanoutResult>,
    pub cross_node: Option<FanoutResult>,
    pub polling: Option<PollingResult>,
}

pub async fn run(cfg: &SuiteConfig) -> Result<SuiteResult, ScenarioError> {
    let mut result = SuiteResult {
        server: cfg.launch.kind,
        redis: cfg.launch.wants_redis(),
        history_max_messages: cfg.launch.history_max_messages,
        redis_replicas: cfg.launch.redis_replicas,
        idle: Vec::new(),
        fanout: None,
        cross_node: None,
        polling: None,
    };
    let single = LaunchConfig {
        nodes: 1,
        ..cfg.launch.clone()
    };
    if cfg.scenarios.contains(&Scenario::Idle) {
        let runs = cfg
            .idle_transports
            .iter()
            .flat_map(|&t| cfg.idle_sizes.iter().map(move |&n| (t, n)));
        for (transport, connections) in runs {
            let cluster = Cluster::start(&single).await?;
            let idle_cfg = IdleConfig {
                connections,
                transport,
                connect_rate: cfg.connect_rate,
                rooms: 100,
                hold: cfg.idle_hold,
            };
            let r = idle::run(&cluster, &idle_cfg).await?;
            eprintln!(
                "idle {connections} ({transport:?}): {} connected, {} open after hold, {:.1} KiB/connection",
                r.connected, r.open_after_hold, r.rss_per_connection_kib
            );
            result.idle.push(r);
        }
    }
    if cfg.scenarios.contains(&Scenario::Fanout) {
        let cluster = Cluster::start(&single).await?;
        result.fanout = Some(fanout::run(&cluster, &cfg.fanout, 100).await?);
    }
    if cfg.scenarios.contains(&Scenario::Cross) {
        let cluster = Cluster::start(&LaunchConfig {
            nodes: cfg.cross_nodes,
            ..cfg.launch.clone()
        })
        .await?;
        result.cross_node = Some(fanout::run(&cluster, &cfg.cross, 200).await?);
    }
    if cfg.scenarios.contains(&Scenario::Polling) {
        let cluster = Cluster::start(&single).await?;
        result.polling = Some(polling::run(&cluster, &cfg.polling, 300).await?);
    }
    Ok(result)
}
