//! Starts what a run measures: redis-server (for several nodes, for history, or
//! when asked) and the server nodes, push-server or the Node reference, pinned
//! with `taskset`. Everything started here is killed when the [`Cluster`] is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use push_contract::{defaults, env, paths, socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// This project's push-server.
    Push,
    /// socket.io 4.8 + @socket.io/redis-adapter (bench/node-reference).
    Node,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0} did not become ready within {READY_TIMEOUT:?}")]
    NotReady(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("history (--history-max-messages) is push-server's; the Node reference has none")]
    HistoryOnNode,
}

#[derive(Debug, Clone)]
pub struct LaunchConfig {
    pub kind: ServerKind,
    pub nodes: usize,
    pub push_server_bin: PathBuf,
    pub node_script: PathBuf,
    /// `taskset -c` list for the servers (and redis); `None` = no pinning.
    pub server_cpus: Option<String>,
    pub api_token: String,
    /// Start a redis-server and hand it to the nodes even when there is one node.
    pub redis: bool,
    /// push-server's history (connection state recovery): messages kept per room,
    /// 0 = off. More than 0 needs Redis, so it starts one.
    pub history_max_messages: u32,
    /// Replicas of the redis-server; a 202 waits for one of them (0: no replicas).
    pub redis_replicas: u32,
}

impl LaunchConfig {
    /// Whether the nodes get a redis-server: several nodes share it, history lives in it.
    pub fn wants_redis(&self) -> bool {
        self.nodes > 1 || self.redis || self.history_max_messages > 0 || self.redis_replicas > 0
    }
}

/// Running server nodes: their URLs and PIDs (for RSS).
pub struct Cluster {
    /// Where clients connect.
    pub urls: Vec<String>,
    /// Where publishes go: push-server's server port (never its client port), the Node
    /// reference's one port.
    pub publish_urls: Vec<String>,
    pub pids: Vec<u32>,
    /// The redis-server the nodes share (its primary), when they have one.
    pub redis_pid: Option<u32>,
    pub api_token: String,
    _children: Vec<Child>,
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn pinned(program: &str, cpus: &Option<String>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The Node reference's one JSON argument, built from the contract.
pub fn node_config(listen: &str, redis_url: Option<&str>, token: &str) -> serde_json::Value {
    serde_json::json!({
        "listen": listen,
        "redisUrl": redis_url,
        "apiToken": token,
        "socketPath": paths::SOCKET_IO,
        "publishPath": paths::PUBLISH,
        "subscribeEvent": socket::SUBSCRIBE,
        "unsubscribeEvent": socket::UNSUBSCRIBE,
        "userRoomPrefix": socket::USER_ROOM_PREFIX,
        "maxPayloadBytes": defaults::MAX_PAYLOAD_BYTES,
    })
}

impl Cluster {
    /// Servers started by someone else (the smoke test): nothing to kill.
    pub fn attach(
        urls: Vec<String>,
        publish_urls: Vec<String>,
        pids: Vec<u32>,
        api_token: String,
    ) -> Cluster {
        Cluster {
            urls,
            publish_urls,
            pids,
            redis_pid: None,
            api_token,
            _children: Vec::new(),
        }
    }

    pub async fn start(cfg: &LaunchConfig) -> Result<Cluster, LaunchError> {
        if cfg.kind == ServerKind::Node && cfg.history_max_messages > 0 {
            return Err(LaunchError::HistoryOnNode);
        }
        let mut children = Vec::new();
        let mut redis_pid = None;
        let redis_url = if cfg.wants_redis() {
            let port = free_port()?;
            let child = pinned("redis-server", &cfg.server_cpus)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| LaunchError::Spawn("redis-server".into(), e))?;
            // `taskset` execs redis-server: the child's pid is Redis's.
            redis_pid = child.id();
            children.push(child);
            wait_redis(port).await?;
            for _ in 0..cfg.redis_replicas {
                let replica = free_port()?;
                // Its full sync writes dump.rdb into its directory, which a redis-server
                // started there later would load: a directory of its own, not the cwd.
                let dir = std::env::temp_dir().join(format!("push-loadgen-redis-{replica}"));
                std::fs::create_dir_all(&dir)?;
                let child = pinned("redis-server", &cfg.server_cpus)
                    .args(["--bind", "127.0.0.1", "--port", &replica.to_string()])
                    .arg("--dir")
                    .arg(&dir)
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--replicaof", "127.0.0.1", &port.to_string()])
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| LaunchError::Spawn("redis-server replica".into(), e))?;
                children.push(child);
                wait_redis_synced(replica).await?;
            }
            Some(format!("redis://127.0.0.1:{port}/?protocol=resp3"))
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let (mut urls, mut publish_urls, mut pids) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..cfg.nodes {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let admin = format!("127.0.0.1:{}", free_port()?);
            let mut cmd = match cfg.kind {
                ServerKind::Push => {
                    let mut cmd =
                        pinned(&cfg.push_server_bin.display().to_string(), &cfg.server_cpus);
                    cmd.env(env::LISTEN, &listen)
                        .env(env::ADMIN_LISTEN, &admin)
                        .env(env::NODE_ID, format!("bench-{n}"))
                        .env(env::API_TOKEN, &cfg.api_token)
                        .env(env::LOG, "warn")
                        // The fleet connects as fast as it can (the Node reference has no
                        // handshake rate); the rate itself is tested in e2e/hostile.
                        .env(env::HANDSHAKES_PER_SECOND, "0")
                        // Explicit even when 0: the caller's environment must not turn it on.
                        .env(
                            env::HISTORY_MAX_MESSAGES,
                            cfg.history_max_messages.to_string(),
                        );
                    if cfg.history_max_messages > 0 {
                        cmd.env(
                            env::HISTORY_TTL_SECONDS,
                            defaults::HISTORY_TTL_SECONDS.to_string(),
                        );
                    }
                    if let Some(url) = &redis_url {
                        cmd.env(env::REDIS_URL, url);
                    }
                    cmd.env(
                        env::REDIS_MIN_REPLICAS,
                        u32::from(cfg.redis_replicas > 0).to_string(),
                    );
                    cmd
                }
                ServerKind::Node => {
                    let mut cmd = pinned("node", &cfg.server_cpus);
                    let config = node_config(&listen, redis_url.as_deref(), &cfg.api_token);
                    cmd.arg(&cfg.node_script).arg(config.to_string());
                    cmd
                }
            };
            let child = cmd
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| LaunchError::Spawn(format!("{:?} node {n}", cfg.kind), e))?;
            pids.push(child.id().unwrap_or(0));
            children.push(child);
            let url = format!("http://{listen}");
            let probe = format!("{url}{}?EIO=4&transport=polling", paths::SOCKET_IO);
            wait_http(&http, &probe, &format!("{:?} node {n}", cfg.kind)).await?;
            if cfg.kind == ServerKind::Push && redis_url.is_some() {
                let ready = format!("http://{admin}{}", paths::READYZ);
                wait_http(&http, &ready, &format!("push-server node {n} /readyz")).await?;
            }
            publish_urls.push(match cfg.kind {
                ServerKind::Push => format!("http://{admin}"),
                ServerKind::Node => url.clone(),
            });
            urls.push(url);
        }
        Ok(Cluster {
            urls,
            publish_urls,
            pids,
            redis_pid,
            api_token: cfg.api_token.clone(),
            _children: children,
        })
    }
}

async fn wait_http(http: &reqwest::Client, url: &str, what: &str) -> Result<(), LaunchError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LaunchError::NotReady(what.to_string()))
}

async fn wait_redis(port: u16) -> Result<(), LaunchError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = [0u8; 7];
            if conn.write_all(b"PING\r\n").await.is_ok()
                && conn.read_exact(&mut buf).await.is_ok()
                && &buf == b"+PONG\r\n"
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LaunchError::NotReady("redis-server".into()))
}

/// Waits until the replica on `port` is in sync with its primary.
async fn wait_redis_synced(port: u16) -> Result<(), LaunchError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = vec![0u8; 4096];
            if conn.write_all(b"INFO replication\r\n").await.is_ok()
                && let Ok(n) = conn.read(&mut buf).await
                && String::from_utf8_lossy(&buf[..n]).contains("master_link_status:up")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LaunchError::NotReady("redis-server replica in sync".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_takes_every_name_from_the_contract() {
        let cfg = node_config("127.0.0.1:1", Some("redis://x/?protocol=resp3"), "t");
        assert_eq!(cfg["publishPath"], paths::PUBLISH);
        assert_eq!(cfg["socketPath"], paths::SOCKET_IO);
        assert_eq!(cfg["subscribeEvent"], socket::SUBSCRIBE);
        assert_eq!(cfg["redisUrl"], "redis://x/?protocol=resp3");
        assert!(
            node_config("a:1", None, "t")["redisUrl"].is_null(),
            "single node has no redis"
        );
    }

    fn one_node(kind: ServerKind) -> LaunchConfig {
        LaunchConfig {
            kind,
            nodes: 1,
            push_server_bin: PathBuf::new(),
            node_script: PathBuf::new(),
            server_cpus: None,
            api_token: String::new(),
            redis: false,
            history_max_messages: 0,
            redis_replicas: 0,
        }
    }

    #[test]
    fn wants_redis_table() {
        let base = one_node(ServerKind::Push);
        let cases = [
            ("one node", base.clone(), false),
            (
                "two nodes",
                LaunchConfig {
                    nodes: 2,
                    ..base.clone()
                },
                true,
            ),
            (
                "asked for",
                LaunchConfig {
                    redis: true,
                    ..base.clone()
                },
                true,
            ),
            (
                "history needs it",
                LaunchConfig {
                    history_max_messages: 1000,
                    ..base.clone()
                },
                true,
            ),
            (
                "replicas need it",
                LaunchConfig {
                    redis_replicas: 2,
                    ..base.clone()
                },
                true,
            ),
        ];
        for (name, cfg, want) in cases {
            assert_eq!(cfg.wants_redis(), want, "case {name}");
        }
    }

    #[tokio::test]
    async fn history_on_the_node_reference_is_refused() {
        let cfg = LaunchConfig {
            history_max_messages: 10,
            ..one_node(ServerKind::Node)
        };
        assert!(matches!(
            Cluster::start(&cfg).await,
            Err(LaunchError::HistoryOnNode)
        ));
    }
}
