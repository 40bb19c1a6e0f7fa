//! Command-line interface: `suite`, `fanout` (against running servers),
//! `report`, and the internal `worker`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::launch::ServerKind;
use crate::spec::Transport;
use crate::suite::Scenario;

#[derive(Parser)]
#[command(
    name = "push-loadgen",
    version,
    about = "socket.io load generator: push-server vs the Node reference"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Start servers of one kind and run every scenario against them; write JSON.
    Suite(Box<SuiteArgs>),
    /// One fan-out run against servers that are already running (the smoke test).
    Fanout(FanoutArgs),
    /// Start servers of one kind, print their URLs, PIDs and the contract names
    /// as one JSON line, and keep them until stdin closes (for the smoke test).
    Serve(ServeArgs),
    /// Render the side-by-side Markdown from two `suite` results.
    Report(ReportArgs),
    /// Internal: one worker process (spawned by the others).
    #[command(hide = true)]
    Worker { spec: String },
}

#[derive(Args)]
pub struct SuiteArgs {
    #[arg(long, value_enum)]
    pub server: ServerKind,
    #[arg(long, default_value = "target/release/push-server")]
    pub push_server_bin: PathBuf,
    #[arg(long, default_value = "bench/node-reference/server.js")]
    pub node_script: PathBuf,
    /// CPUs for the servers (`taskset -c`); empty = no pinning. Pin the generator yourself.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The last `--scenarios` wins (bench/ab and bench/continuity put theirs after yours).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,fanout,cross,polling",
        overrides_with = "scenarios"
    )]
    pub scenarios: Vec<Scenario>,
    /// New connections per second.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    #[arg(long, value_delimiter = ',', default_value = "1000,3000,19000")]
    pub idle_sizes: Vec<usize>,
    /// Transports of the idle scenario, each at every size.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "websocket")]
    pub idle_transports: Vec<Transport>,
    #[arg(long, default_value_t = 10)]
    pub idle_hold_secs: u64,
    #[arg(long, default_value_t = 10_000)]
    pub fanout_clients: usize,
    #[arg(long, default_value_t = 10)]
    pub fanout_rooms: usize,
    /// Publishes per second, one step each; stops at the first overloaded step.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60,70,80,100,120,140,160,200,240,320,480,640,960"
    )]
    pub fanout_rates: Vec<f64>,
    #[arg(long, default_value_t = 5)]
    pub step_secs: u64,
    #[arg(long, default_value_t = 2)]
    pub cross_nodes: usize,
    #[arg(long, default_value_t = 1_000)]
    pub cross_clients: usize,
    #[arg(long, default_value_t = 100)]
    pub cross_rooms: usize,
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub cross_rates: Vec<f64>,
    #[arg(long, default_value_t = 10)]
    pub cross_secs: u64,
    /// Messages published to every room before the cross-node clients connect: with
    /// `--history-max-messages`, the steps start from full histories (the publish
    /// ceiling at full history, bench/ceiling)
    #[arg(long, default_value_t = 0)]
    pub cross_fill_per_room: u64,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,3000,6000,10000,15000,19000"
    )]
    pub polling_sizes: Vec<usize>,
    #[arg(long, default_value_t = 100)]
    pub polling_rooms: usize,
    #[arg(long, default_value_t = 0.5)]
    pub polling_msgs_per_client_per_s: f64,
    #[arg(long, default_value = "bench-token")]
    pub api_token: String,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, value_enum)]
    pub server: ServerKind,
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    #[arg(long, default_value = "target/release/push-server")]
    pub push_server_bin: PathBuf,
    #[arg(long, default_value = "bench/node-reference/server.js")]
    pub node_script: PathBuf,
    /// CPUs for the servers (`taskset -c`); empty = no pinning.
    #[arg(long, default_value = "")]
    pub server_cpus: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[arg(long)]
    pub api_token: String,
}

/// Redis and history, for the runs that compare history on and off on the same topology.
#[derive(Args)]
pub struct RedisArgs {
    /// Give the servers a redis-server even on one node (several nodes always get one):
    /// the history-off side of a history on / off comparison.
    #[arg(long)]
    pub with_redis: bool,
    /// push-server's history for connection state recovery: messages kept per room
    /// (PUSH_HISTORY_MAX_MESSAGES; PUSH_HISTORY_TTL_SECONDS = 300). Starts a redis-server
    /// even on one node (history lives there). 0 = off.
    #[arg(long, default_value_t = 0)]
    pub history_max_messages: u32,
    /// Replicas of the redis-server (`--replicaof`), each in sync before the run; push-server
    /// then answers 202 only once one of them has the message (PUSH_REDIS_MIN_REPLICAS=1,
    /// Redis WAIT) and delivers only what one has: the cost of the replica acknowledgement.
    #[arg(long, default_value_t = 0)]
    pub redis_replicas: u32,
}

#[derive(Args)]
pub struct FanoutArgs {
    /// Server base URLs (`http://IP:PORT`); clients spread over them.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Where publishes go (push-server: its server port); default: the first `--url`.
    #[arg(long)]
    pub publish_url: Option<String>,
    #[arg(long)]
    pub api_token: String,
    /// Server PIDs whose RSS to report (optional).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub rates: Vec<f64>,
    #[arg(long, default_value_t = 2)]
    pub step_secs: u64,
    #[arg(long, default_value_t = 500.0)]
    pub connect_rate: f64,
    /// Where to write the JSON result (stdout otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub push: PathBuf,
    #[arg(long)]
    pub node: PathBuf,
    /// Text describing the machine and the run (nproc, free -h, uname -a, rustc, load).
    #[arg(long)]
    pub machine: Option<PathBuf>,
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite_args(args: &[&str]) -> SuiteArgs {
        let argv = [
            "push-loadgen",
            "suite",
            "--server",
            "push",
            "--out",
            "x.json",
        ];
        match Cli::parse_from(argv.iter().chain(args)).command {
            Cmd::Suite(a) => *a,
            _ => unreachable!("parsed a suite command"),
        }
    }

    #[test]
    fn suite_args_table() {
        use Scenario::*;
        // (case, args, scenarios, --with-redis, --history-max-messages)
        type Case = (
            &'static str,
            &'static [&'static str],
            Vec<Scenario>,
            bool,
            u32,
        );
        let cases: [Case; 4] = [
            (
                "defaults",
                &[],
                vec![Idle, Fanout, Cross, Polling],
                false,
                0,
            ),
            (
                "the last --scenarios wins",
                &["--scenarios", "idle", "--scenarios", "fanout,cross"],
                vec![Fanout, Cross],
                false,
                0,
            ),
            (
                "redis without history",
                &["--with-redis"],
                vec![Idle, Fanout, Cross, Polling],
                true,
                0,
            ),
            (
                "history",
                &["--history-max-messages", "1000"],
                vec![Idle, Fanout, Cross, Polling],
                false,
                1000,
            ),
        ];
        for (name, args, scenarios, redis, history) in cases {
            let a = suite_args(args);
            assert_eq!(a.scenarios, scenarios, "case {name}");
            assert_eq!(a.redis.with_redis, redis, "case {name}");
            assert_eq!(a.redis.history_max_messages, history, "case {name}");
        }
    }
}
