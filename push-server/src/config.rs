//! Command line / environment configuration, validated into a typed [`Config`].
//!
//! Every flag falls back to the environment variable named in the contract, so the
//! operator only sets env vars. Invalid combinations are refused here, before anything
//! binds, with a message naming the variable.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use push_contract::{defaults, env};
use redis::ConnectionInfo;

use crate::{
    admin_ui::settings::AdminUi,
    auth::{jwt::JwtVerifier, session::SessionConfig},
    backend::Backend,
    error::ConfigError,
    history::HistoryConfig,
    redis_link,
};

/// Initial read buffer of each WebSocket (engineioxide's default is 4 KiB). Clients of
/// a push node send little (pongs, subscribe requests), and each idle connection holds
/// this buffer for its whole life: 256 bytes save ~3.8 KiB per connection. A bigger message
/// still arrives whole (the buffer grows to the frame's length, up to the payload
/// limit); it only takes more reads.
pub const WS_READ_BUFFER_BYTES: usize = 256;

/// Cap of hyper's HTTP/1 read buffer per TCP connection (hyper's default lets it grow to
/// ~400 KiB; 8 KiB is hyper's minimum), so one client cannot make a connection hold a huge
/// request head. A request whose head exceeds it gets 431, like nginx's default 8 KiB
/// header buffers; bodies are streamed and not limited by it. (It did not change the idle
/// memory per WebSocket: the head is copied out of this buffer, see `request_head`.)
pub const HTTP1_MAX_BUF_BYTES: usize = 8192;

/// Most binary attachments one socket.io packet may carry.
pub const MAX_ATTACHMENTS: usize = 16;
/// How long the attachments of one packet may take to arrive.
pub const ATTACHMENT_COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest write window accepted: beyond it the window is latency, not batching.
pub const MAX_WRITE_WINDOW_MS: u64 = 1_000;

/// The configured node id, else the hostname (the pod name).
fn node_id(configured: Option<String>) -> Result<String, ConfigError> {
    match configured {
        Some(id) if id.trim().is_empty() => Err(ConfigError::Empty(env::NODE_ID)),
        Some(id) => Ok(id),
        None => Ok(hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "push-server".to_owned())),
    }
}

/// 0 = what the process can hold: the open-file limit minus what the admin port, Redis
/// and logs need, and under a container memory limit no more than fits in it (a flood of
/// idle connections must be refused at accept, not end in an OOM kill).
fn max_connections(configured: usize) -> usize {
    match configured {
        0 => {
            let by_files = open_file_limit().map_or(10_000, |limit| {
                limit.saturating_sub(defaults::FD_RESERVE).max(1)
            });
            memory_limit().map_or(by_files, |limit| by_files.min(connections_within(limit)))
        }
        n => n,
    }
}

/// Connections that fit in `limit` bytes of memory, the reserve set aside.
fn connections_within(limit: u64) -> usize {
    let usable = limit.saturating_sub(defaults::MEMORY_RESERVE_BYTES);
    usize::try_from(usable / defaults::MEMORY_PER_CONNECTION_BYTES)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The memory limit of this process's container: cgroup v2's `memory.max`, else v1's
/// `memory.limit_in_bytes` (a container sees its own cgroup at the mount's root). None
/// when unlimited ("max", or v1's near-2^63 value) or unreadable (not in a container).
fn memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let text = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    parse_memory_limit(&text)
}

fn parse_memory_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    // v1 writes "unlimited" as the largest page-aligned i64.
    (limit < 1 << 62).then_some(limit)
}

/// This process's soft limit of open files (Linux: /proc/self/limits).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Flags as the user typed them (or as the environment provided them).
#[derive(Debug, Clone, Parser)]
#[command(name = "push-server", version, about = "socket.io push node")]
pub struct Cli {
    /// Client listener: socket.io (and the demo page with --demo-page).
    #[arg(long, env = env::LISTEN, default_value = defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Server listener: the publish API, /metrics, /healthz, /readyz (never exposed to
    /// clients).
    #[arg(long, env = env::ADMIN_LISTEN, default_value = defaults::ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Write the bound addresses here as JSON once listening (for supervisors and tests
    /// that listen on port 0).
    #[arg(long, env = env::ADDRESS_FILE)]
    pub address_file: Option<PathBuf>,
    /// Node identity in logs and metrics (default: hostname).
    #[arg(long, env = env::NODE_ID)]
    pub node_id: Option<String>,
    /// Redis URL; unset = single node with the in-memory adapter.
    #[arg(long, env = env::REDIS_URL)]
    pub redis_url: Option<String>,
    /// Redis password, merged into the URL.
    #[arg(long, env = env::REDIS_PASSWORD, hide_env_values = true)]
    pub redis_password: Option<String>,
    /// CA certificates (PEM) a rediss:// Redis must be signed by (default: public roots).
    #[arg(long, env = env::REDIS_CA_FILE)]
    pub redis_ca_file: Option<PathBuf>,
    /// Redis Sentinels, `host:port` (comma-separated): follow the primary they name.
    #[arg(long, env = env::REDIS_SENTINELS, value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,
    /// Redis Cluster seed nodes, `host:port` (comma-separated): use the primary owning
    /// the slot of this cluster's keys and follow it through failovers.
    #[arg(long, env = env::REDIS_CLUSTER, value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    #[arg(long, env = env::REDIS_SENTINEL_MASTER, default_value = defaults::REDIS_SENTINEL_MASTER)]
    pub redis_sentinel_master: String,
    /// Replicas that must have a message before a 202 (Redis WAIT); 0 = do not wait.
    #[arg(long, env = env::REDIS_MIN_REPLICAS, default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// Redis pub/sub channel other systems publish to.
    #[arg(long, env = env::REDIS_CHANNEL, default_value = defaults::REDIS_CHANNEL)]
    pub redis_channel: String,
    /// Most client-port connections (0 = what the open-file and memory limits allow).
    #[arg(long, env = env::MAX_CONNECTIONS, default_value_t = 0)]
    pub max_connections: usize,
    /// Most sockets one user has across the cluster (0 = no limit).
    #[arg(long, env = env::MAX_CONNECTIONS_PER_USER, default_value_t = 0)]
    pub max_connections_per_user: u32,
    /// Seconds a client connection may take to send its request head.
    #[arg(long, env = env::HEADER_TIMEOUT_SECONDS, default_value_t = defaults::HEADER_TIMEOUT_SECONDS)]
    pub header_timeout_seconds: u64,
    /// Engine.IO heartbeat period in milliseconds (socket.io's pingInterval).
    #[arg(long, env = env::PING_INTERVAL_MS, default_value_t = defaults::PING_INTERVAL_MS)]
    pub ping_interval_ms: u64,
    /// Milliseconds a PONG may take before the session is closed (pingTimeout).
    #[arg(long, env = env::PING_TIMEOUT_MS, default_value_t = defaults::PING_TIMEOUT_MS)]
    pub ping_timeout_ms: u64,
    /// A WebSocket's write window in milliseconds: a message queued within it after the
    /// socket's last write waits until it ends, so that the messages queued meanwhile
    /// share one write (fewer syscalls per message at high per-socket rates, for up to
    /// this much latency); a socket that wrote nothing within it writes at once. 0: off.
    #[arg(long, env = env::WRITE_WINDOW_MS, default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_WRITE_WINDOW_MS))]
    pub write_window_ms: u64,
    /// Room requests (subscribe/unsubscribe) one socket may send per second.
    #[arg(long, env = env::EVENTS_PER_SECOND, default_value_t = defaults::EVENTS_PER_SECOND)]
    pub events_per_second: u32,
    /// Room requests one socket may send at once before the per-second rate applies.
    #[arg(long, env = env::EVENT_BURST, default_value_t = defaults::EVENT_BURST)]
    pub event_burst: u32,
    /// Milliseconds a publish waits for Redis before answering 503 + Retry-After.
    #[arg(long, env = env::REDIS_TIMEOUT_MS, default_value_t = defaults::REDIS_TIMEOUT_MS)]
    pub redis_timeout_ms: u64,
    /// Bearer token of the publish API; unset = API disabled.
    #[arg(long, env = env::API_TOKEN, hide_env_values = true)]
    pub api_token: Option<String>,
    /// HS256 secret: every connection must carry a valid JWT.
    #[arg(long, env = env::JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file (RS256 or ES256): every connection must carry a valid JWT.
    #[arg(long, env = env::JWT_PUBLIC_KEY_FILE)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Expected `iss` claim.
    #[arg(long, env = env::JWT_ISSUER)]
    pub jwt_issuer: Option<String>,
    /// Expected `aud` claim.
    #[arg(long, env = env::JWT_AUDIENCE)]
    pub jwt_audience: Option<String>,
    /// Largest accepted message: publish body, polling body, WebSocket message.
    #[arg(long, env = env::MAX_PAYLOAD_BYTES, default_value_t = defaults::MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// Window over which clients are moved off on SIGTERM.
    #[arg(long, env = env::DRAIN_SECONDS, default_value_t = defaults::DRAIN_SECONDS)]
    pub drain_seconds: u64,
    /// Wait before the first client is moved off: the Service stops routing here first.
    #[arg(long, env = env::DRAIN_SETTLE_MS, default_value_t = defaults::DRAIN_SETTLE_MS)]
    pub drain_settle_ms: u64,
    /// New socket.io sessions per second this node starts (0 = no limit); beyond: 503.
    #[arg(long, env = env::HANDSHAKES_PER_SECOND, default_value_t = defaults::HANDSHAKES_PER_SECOND)]
    pub handshakes_per_second: u32,
    /// Messages queued per socket before it counts as a slow consumer (disconnected).
    #[arg(long, env = env::SEND_BUFFER_MESSAGES, default_value_t = defaults::SEND_BUFFER_MESSAGES)]
    pub send_buffer_messages: usize,
    /// Messages kept per room, user and broadcast for reconnecting clients (needs
    /// Redis); 0 = no history.
    #[arg(long, env = env::HISTORY_MAX_MESSAGES, default_value_t = 0)]
    pub history_max_messages: u32,
    /// Seconds a message stays in history.
    #[arg(long, env = env::HISTORY_TTL_SECONDS, default_value_t = defaults::HISTORY_TTL_SECONDS)]
    pub history_ttl_seconds: u32,
    /// express-session cookie secret; set = shared-session mode on (needs Redis).
    #[arg(long, env = env::SESSION_SECRET, hide_env_values = true)]
    pub session_secret: Option<String>,
    #[arg(long, env = env::SESSION_COOKIE, default_value = defaults::SESSION_COOKIE)]
    pub session_cookie: String,
    #[arg(long, env = env::SESSION_PREFIX, default_value = defaults::SESSION_PREFIX)]
    pub session_prefix: String,
    #[arg(long, env = env::SESSION_USER_PATH, default_value = defaults::SESSION_USER_PATH)]
    pub session_user_path: String,
    /// How nodes receive the cluster's messages (see `push_contract::env::FANOUT`).
    #[arg(long, env = env::FANOUT, default_value = "interest")]
    pub fanout: FanoutMode,
    /// The application's endpoint client events are handed to (see `backend`).
    #[arg(long, env = env::BACKEND_URL)]
    pub backend_url: Option<String>,
    /// HMAC-SHA256 key signing every request to the backend.
    #[arg(long, env = env::BACKEND_SECRET, hide_env_values = true)]
    pub backend_secret: Option<String>,
    /// Client events handed to the backend (comma-separated).
    #[arg(long, env = env::BACKEND_EVENTS, value_delimiter = ',')]
    pub backend_events: Vec<String>,
    /// Those of them the backend may receive twice (retried once).
    #[arg(long, env = env::BACKEND_IDEMPOTENT_EVENTS, value_delimiter = ',')]
    pub backend_idempotent_events: Vec<String>,
    /// Milliseconds a backend event may take, retry included.
    #[arg(long, env = env::BACKEND_TIMEOUT_MS, default_value_t = defaults::BACKEND_TIMEOUT_MS)]
    pub backend_timeout_ms: u64,
    /// Most backend requests this node has in flight.
    #[arg(long, env = env::BACKEND_MAX_IN_FLIGHT, default_value_t = defaults::BACKEND_MAX_IN_FLIGHT)]
    pub backend_max_in_flight: usize,
    /// Tell a room's members when a user's socket joins or leaves it.
    #[arg(long, env = env::PRESENCE_EVENTS, default_value_t = false, action = clap::ArgAction::Set)]
    pub presence_events: bool,
    /// Presence events one node sends per room per second at most.
    #[arg(long, env = env::PRESENCE_EVENTS_PER_SECOND, default_value_t = defaults::PRESENCE_EVENTS_PER_SECOND)]
    pub presence_events_per_second: u32,
    /// The socket.io Admin UI's password; set = `/admin` on (see `admin_ui`).
    #[arg(long, env = env::ADMIN_UI_PASSWORD, hide_env_values = true)]
    pub admin_ui_password: Option<String>,
    #[arg(long, env = env::ADMIN_UI_USERNAME, default_value = "admin")]
    pub admin_ui_username: String,
    /// The Admin UI only looks (false: it may also disconnect and move sockets).
    #[arg(long, env = env::ADMIN_UI_READONLY, default_value_t = true, action = clap::ArgAction::Set)]
    pub admin_ui_readonly: bool,
    /// The Admin UI's prebuilt web app (default: looked up like the client bundle).
    #[arg(long, env = env::ADMIN_UI_DIR)]
    pub admin_ui_dir: Option<PathBuf>,
    /// Official socket.io client bundle served to the demo page.
    #[arg(long, env = env::CLIENT_JS)]
    pub client_js: Option<PathBuf>,
    /// Serve the demo page (`/`) and its client bundle on the client port.
    #[arg(long, env = env::DEMO_PAGE, default_value_t = false, action = clap::ArgAction::Set)]
    pub demo_page: bool,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = env::LOG, default_value = "info")]
    pub log: String,
    /// `text` or `json`.
    #[arg(long, env = env::LOG_FORMAT, default_value = "text")]
    pub log_format: LogFormat,
}

/// How a node receives the cluster's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FanoutMode {
    /// Every node reads the whole fan-out log (`publish::log`).
    Log,
    /// Each node receives its rooms' messages only (`publish::interest`).
    Interest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration `run` works from.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub address_file: Option<PathBuf>,
    pub node_id: String,
    /// RESP3, password merged in.
    pub redis: Option<ConnectionInfo>,
    /// Sentinels or a Redis Cluster naming the primary (the host in `redis` is then not
    /// used).
    pub redis_topology: Option<redis_link::Topology>,
    /// What every Redis key of this cluster starts with: the channel, or with a Redis
    /// Cluster `{channel}` (a hash tag: every key in one slot).
    pub redis_key_prefix: String,
    /// Replicas a 202 waits for (Redis WAIT, for up to `redis_timeout` more).
    pub redis_min_replicas: u32,
    pub redis_channel: String,
    /// A publish answers 503 when Redis has not taken it within this long.
    pub redis_timeout: Duration,
    /// Client-port connections admitted at once (the rest are closed at accept).
    pub max_connections: usize,
    /// Sockets one user may have across the cluster (`None`: no limit).
    pub max_connections_per_user: Option<u32>,
    /// Time a client connection has to send its request head.
    pub header_timeout: Duration,
    /// Engine.IO heartbeat: PING period and how long a PONG may take.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// A WebSocket's write window (see `write_window_ms`).
    pub write_window: Duration,
    /// Per-socket budget of room requests: rate per second and burst.
    pub events_per_second: u32,
    pub event_burst: u32,
    pub api_token: Option<String>,
    pub jwt: Option<JwtVerifier>,
    pub session: Option<SessionConfig>,
    /// New sessions per second (bursts of a second's worth); `None` = no limit.
    pub handshakes_per_second: Option<u32>,
    /// Messages queued per socket; beyond, the socket is a slow consumer and is cut.
    pub send_buffer: usize,
    /// History for connection state recovery; `None` = off.
    pub history: Option<HistoryConfig>,
    pub max_payload_bytes: usize,
    pub drain: Duration,
    /// Not ready and refusing new sessions for this long before the drain moves anyone.
    pub drain_settle: Duration,
    /// Presence events per room per second (`None`: no presence events).
    pub presence_events: Option<u32>,
    /// The socket.io Admin UI (`None`: off).
    pub admin_ui: Option<AdminUi>,
    /// Client events handed to the application's backend; `None` = none.
    pub backend: Option<Backend>,
    pub client_js: Option<PathBuf>,
    /// The client port serves the demo page.
    pub demo_page: bool,
    pub fanout: FanoutMode,
    pub log: String,
    pub log_format: LogFormat,
}

impl Config {
    /// What a 202 (and a delivery, and a replay) waits for beyond the primary:
    /// `PUSH_REDIS_MIN_REPLICAS` replicas, for up to the Redis timeout.
    pub fn replica_wait(&self) -> Option<crate::history::script::ReplicaWait> {
        (self.redis_min_replicas > 0).then(|| crate::history::script::ReplicaWait {
            replicas: self.redis_min_replicas,
            timeout_ms: u64::try_from(self.redis_timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Validates the flags; the error names the variable to fix.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let node_id = node_id(cli.node_id)?;
        let redis_ca = match &cli.redis_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Read {
                var: env::REDIS_CA_FILE,
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let redis = match cli.redis_url {
            Some(url) => Some(redis_link::connection_info(
                &url,
                cli.redis_password.as_deref(),
                redis_ca.as_deref(),
            )?),
            None if cli.redis_password.is_some() => {
                return Err(ConfigError::Requires(env::REDIS_PASSWORD, env::REDIS_URL));
            }
            None if redis_ca.is_some() => {
                return Err(ConfigError::Requires(env::REDIS_CA_FILE, env::REDIS_URL));
            }
            None => None,
        };
        let redis_key_prefix = if cli.redis_cluster.is_empty() {
            cli.redis_channel.clone()
        } else {
            cluster_key_prefix(&cli.redis_channel)?
        };
        let redis_topology = match (
            &redis,
            cli.redis_sentinels.is_empty(),
            cli.redis_cluster.is_empty(),
        ) {
            (_, true, true) => None,
            (_, false, false) => {
                return Err(ConfigError::Exclusive(
                    env::REDIS_SENTINELS,
                    env::REDIS_CLUSTER,
                ));
            }
            (None, false, _) => {
                return Err(ConfigError::Requires(env::REDIS_SENTINELS, env::REDIS_URL));
            }
            (None, _, false) => {
                return Err(ConfigError::Requires(env::REDIS_CLUSTER, env::REDIS_URL));
            }
            (Some(_), false, true) => Some(redis_link::Topology::Sentinels(
                redis_link::Sentinels::parse(&cli.redis_sentinels, &cli.redis_sentinel_master)?,
            )),
            (Some(info), true, false) => {
                if info.redis_settings().db() != 0 {
                    return Err(ConfigError::Invalid {
                        var: env::REDIS_URL,
                        reason: "a Redis Cluster has only db 0".into(),
                    });
                }
                Some(redis_link::Topology::Cluster(
                    redis_link::ClusterNodes::parse(&cli.redis_cluster, &redis_key_prefix)?,
                ))
            }
        };
        if cli.redis_min_replicas > 0 && redis.is_none() {
            return Err(ConfigError::Requires(
                env::REDIS_MIN_REPLICAS,
                env::REDIS_URL,
            ));
        }
        if cli.redis_channel.is_empty() {
            return Err(ConfigError::Empty(env::REDIS_CHANNEL));
        }
        if cli.events_per_second == 0 || cli.event_burst == 0 {
            return Err(ConfigError::Invalid {
                var: env::EVENTS_PER_SECOND,
                reason: "the event rate and burst must be at least 1".into(),
            });
        }
        if cli.redis_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                var: env::REDIS_TIMEOUT_MS,
                reason: "must be at least 1 (milliseconds)".into(),
            });
        }
        if cli.api_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Empty(env::API_TOKEN));
        }
        let jwt = JwtVerifier::from_settings(
            cli.jwt_secret.as_deref(),
            cli.jwt_public_key_file.as_deref(),
            cli.jwt_issuer.as_deref(),
            cli.jwt_audience.as_deref(),
        )?;
        let session = SessionConfig::from_settings(
            cli.session_secret,
            cli.session_cookie,
            cli.session_prefix,
            cli.session_user_path,
            redis.is_some(),
        )?;
        let history = history(
            cli.history_max_messages,
            cli.history_ttl_seconds,
            redis.is_some(),
        )?;
        if cli.max_payload_bytes == 0 {
            return Err(ConfigError::Invalid {
                var: env::MAX_PAYLOAD_BYTES,
                reason: "must be greater than 0".into(),
            });
        }
        let backend = Backend::from_settings(
            cli.backend_url,
            cli.backend_secret,
            cli.backend_events,
            cli.backend_idempotent_events,
            cli.backend_timeout_ms,
            cli.backend_max_in_flight,
        )?;
        let admin_ui = AdminUi::from_settings(
            cli.admin_ui_username,
            cli.admin_ui_password,
            cli.admin_ui_readonly,
            cli.admin_ui_dir,
        )?;
        if cli.presence_events && cli.presence_events_per_second == 0 {
            return Err(ConfigError::Invalid {
                var: env::PRESENCE_EVENTS_PER_SECOND,
                reason: "must be at least 1".into(),
            });
        }
        if let Some(path) = &cli.client_js
            && !path.is_file()
        {
            return Err(ConfigError::Invalid {
                var: env::CLIENT_JS,
                reason: format!("{} is not a readable file", path.display()),
            });
        }
        Ok(Self {
            listen: cli.listen,
            admin_listen: cli.admin_listen,
            address_file: cli.address_file,
            node_id,
            redis,
            redis_topology,
            redis_key_prefix,
            redis_min_replicas: cli.redis_min_replicas,
            redis_channel: cli.redis_channel,
            redis_timeout: Duration::from_millis(cli.redis_timeout_ms),
            max_connections: max_connections(cli.max_connections),
            max_connections_per_user: (cli.max_connections_per_user > 0)
                .then_some(cli.max_connections_per_user),
            header_timeout: Duration::from_secs(cli.header_timeout_seconds.max(1)),
            ping_interval: Duration::from_millis(cli.ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(cli.ping_timeout_ms.max(1)),
            write_window: Duration::from_millis(cli.write_window_ms),
            events_per_second: cli.events_per_second,
            event_burst: cli.event_burst,
            api_token: cli.api_token,
            jwt,
            session,
            history,
            send_buffer: cli.send_buffer_messages.max(1),
            handshakes_per_second: (cli.handshakes_per_second > 0)
                .then_some(cli.handshakes_per_second),
            max_payload_bytes: cli.max_payload_bytes,
            drain: Duration::from_secs(cli.drain_seconds),
            drain_settle: Duration::from_millis(cli.drain_settle_ms),
            presence_events: cli
                .presence_events
                .then_some(cli.presence_events_per_second),
            backend,
            admin_ui,
            client_js: cli.client_js,
            demo_page: cli.demo_page,
            fanout: cli.fanout,
            log: cli.log,
            log_format: cli.log_format,
        })
    }
}

/// History needs Redis (it lives there) and a TTL; 0 messages = off.
fn history(
    max_messages: u32,
    ttl_seconds: u32,
    redis: bool,
) -> Result<Option<HistoryConfig>, ConfigError> {
    if max_messages == 0 {
        return Ok(None);
    }
    if !redis {
        return Err(ConfigError::Requires(
            env::HISTORY_MAX_MESSAGES,
            env::REDIS_URL,
        ));
    }
    if ttl_seconds == 0 {
        return Err(ConfigError::Invalid {
            var: env::HISTORY_TTL_SECONDS,
            reason: "must be at least 1 (seconds)".into(),
        });
    }
    Ok(Some(HistoryConfig {
        max_messages,
        ttl: Duration::from_secs(u64::from(ttl_seconds)),
    }))
}

fn set_or_unset<T>(value: &Option<T>) -> &'static str {
    if value.is_some() { "set" } else { "unset" }
}

/// The effective configuration, secrets redacted: printed at start.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "node_id={}", self.node_id)?;
        writeln!(
            f,
            "listen={} admin_listen={}",
            self.listen, self.admin_listen
        )?;
        match &self.redis {
            Some(info) => writeln!(
                f,
                "redis={} db={} password={} channel={}",
                info.addr(),
                info.redis_settings().db(),
                if info.redis_settings().password().is_some() {
                    "set"
                } else {
                    "unset"
                },
                self.redis_channel
            )?,
            None => writeln!(f, "redis=none (single node, in-memory adapter)")?,
        }
        writeln!(f, "publish_api_token={}", set_or_unset(&self.api_token))?;
        match &self.jwt {
            Some(jwt) => writeln!(f, "jwt={jwt}")?,
            None => writeln!(f, "jwt=off (anyone may connect and join any room)")?,
        }
        match &self.session {
            Some(s) => writeln!(
                f,
                "session=on cookie={} prefix={} user_path={} secret=set",
                s.cookie, s.prefix, s.user_path
            )?,
            None => writeln!(f, "session=off")?,
        }
        match &self.history {
            Some(h) => writeln!(
                f,
                "history: max_messages={} ttl_seconds={}",
                h.max_messages,
                h.ttl.as_secs()
            )?,
            None => writeln!(f, "history: off")?,
        }
        if self.redis.is_some() {
            writeln!(f, "fanout: {:?}", self.fanout)?;
        }
        match &self.admin_ui {
            Some(a) => writeln!(
                f,
                "admin_ui: on readonly={} app={}",
                a.readonly,
                a.dir
                    .as_ref()
                    .map_or("not found".into(), |d| d.display().to_string())
            )?,
            None => writeln!(f, "admin_ui: off")?,
        }
        match &self.backend {
            Some(b) => writeln!(f, "backend: {b}")?,
            None => writeln!(f, "backend: off")?,
        }
        writeln!(
            f,
            "max_payload_bytes={} drain_seconds={} drain_settle_ms={}",
            self.max_payload_bytes,
            self.drain.as_secs(),
            self.drain_settle.as_millis()
        )?;
        write!(
            f,
            "demo_page={} client_js={}",
            if self.demo_page { "on" } else { "off" },
            self.client_js
                .as_ref()
                .map_or("default lookup".into(), |p| p.display().to_string())
        )
    }
}

/// `{channel}`: with a Redis Cluster every key carries the channel as its hash tag, so
/// they all live in one slot (the publish script touches several at once).
fn cluster_key_prefix(channel: &str) -> Result<String, ConfigError> {
    if channel.contains(['{', '}']) {
        return Err(ConfigError::Invalid {
            var: env::REDIS_CHANNEL,
            reason: "with a Redis Cluster the channel becomes the keys' hash tag: no { or }".into(),
        });
    }
    Ok(format!("{{{channel}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["push-server"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn a_memory_limit_caps_the_default_connection_count() {
        // cgroup v1's "unlimited", v2's "max", garbage: no memory cap.
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit(""), None);
        assert_eq!(parse_memory_limit("50331648\n"), Some(48 << 20));
        // 48 MiB: (48 - 32) MiB at 16 KiB each.
        assert_eq!(connections_within(48 << 20), 1024);
        // The default 1 GiB limit.
        assert_eq!(connections_within(1 << 30), 63_488);
        // Below the reserve: one, never zero (zero would mean "derive it").
        assert_eq!(connections_within(16 << 20), 1);
        // An explicit setting is taken as given.
        assert_eq!(max_connections(7), 7);
    }

    #[test]
    fn invalid_combinations_are_refused_naming_the_variable() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("empty api token", &["--api-token", ""], env::API_TOKEN),
            (
                "password without url",
                &["--redis-password", "pw"],
                env::REDIS_URL,
            ),
            (
                "session without redis",
                &["--session-secret", "s"],
                env::REDIS_URL,
            ),
            (
                "zero payload",
                &["--max-payload-bytes", "0"],
                env::MAX_PAYLOAD_BYTES,
            ),
            (
                "resp2 url",
                &["--redis-url", "redis://h:1/?protocol=resp2"],
                env::REDIS_URL,
            ),
            (
                "not a redis url",
                &["--redis-url", "http://h"],
                env::REDIS_URL,
            ),
            (
                "both jwt keys",
                &["--jwt-secret", "s", "--jwt-public-key-file", "/nonexistent"],
                env::JWT_SECRET,
            ),
            (
                "missing key file",
                &["--jwt-public-key-file", "/nonexistent.pem"],
                env::JWT_PUBLIC_KEY_FILE,
            ),
            (
                "missing client js",
                &["--client-js", "/nonexistent.js"],
                env::CLIENT_JS,
            ),
            ("empty node id", &["--node-id", " "], env::NODE_ID),
            (
                "ca file without url",
                &[
                    "--redis-ca-file",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
                ],
                env::REDIS_URL,
            ),
            (
                "ca file for a plain url",
                &[
                    "--redis-url",
                    "redis://h:1",
                    "--redis-ca-file",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
                ],
                env::REDIS_CA_FILE,
            ),
            (
                "ca file that is not PEM",
                &[
                    "--redis-url",
                    "rediss://h:1",
                    "--redis-ca-file",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
                ],
                env::REDIS_CA_FILE,
            ),
            (
                "missing ca file",
                &[
                    "--redis-url",
                    "rediss://h:1",
                    "--redis-ca-file",
                    "/nonexistent.pem",
                ],
                env::REDIS_CA_FILE,
            ),
            (
                "cluster without url",
                &["--redis-cluster", "h:7000"],
                env::REDIS_URL,
            ),
            (
                "cluster and sentinels",
                &[
                    "--redis-url",
                    "redis://h:1",
                    "--redis-cluster",
                    "h:7000",
                    "--redis-sentinels",
                    "h:26379",
                ],
                env::REDIS_CLUSTER,
            ),
            (
                "cluster with a db",
                &["--redis-url", "redis://h:1/2", "--redis-cluster", "h:7000"],
                env::REDIS_URL,
            ),
            (
                "cluster with braces in the channel",
                &[
                    "--redis-url",
                    "redis://h:1",
                    "--redis-cluster",
                    "h:7000",
                    "--redis-channel",
                    "a{b}",
                ],
                env::REDIS_CHANNEL,
            ),
            (
                "cluster seed without port",
                &["--redis-url", "redis://h:1", "--redis-cluster", "h"],
                env::REDIS_CLUSTER,
            ),
        ];
        for (name, args, var) in cases {
            let err = match Config::from_cli(cli(args)) {
                Ok(_) => panic!("case {name:?}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(var),
                "case {name:?}: {err:?} does not name {var}"
            );
        }
    }

    #[test]
    fn a_redis_cluster_puts_every_key_in_the_slot_it_follows() {
        let config = Config::from_cli(cli(&[
            "--redis-url",
            "redis://h:1",
            "--redis-cluster",
            "a:7000, b:7001",
        ]))
        .expect("valid");
        assert_eq!(config.redis_key_prefix, "{push:publish}");
        let Some(redis_link::Topology::Cluster(nodes)) = &config.redis_topology else {
            panic!("not a cluster: {:?}", config.redis_topology);
        };
        assert_eq!(nodes.addresses, [("a".into(), 7000), ("b".into(), 7001)]);
        let keys = crate::history::Keys::new(&config.redis_key_prefix);
        let room = keys.stream("/", Some("{news}"));
        for key in [
            keys.log(),
            keys.channel_owner(),
            keys.channel_taken(),
            keys.session("p1"),
            keys.idempotency("k}{"),
            room.stream,
            room.trimmed,
            room.created,
        ] {
            assert_eq!(redis_link::key_slot(key.as_bytes()), nodes.slot, "{key}");
        }
        let plain = Config::from_cli(cli(&["--redis-url", "redis://h:1"])).expect("valid");
        assert_eq!(
            plain.redis_key_prefix, "push:publish",
            "keys unchanged without a cluster"
        );
        assert_eq!(plain.redis_topology, None);
    }

    #[test]
    fn display_redacts_secrets() {
        let config = Config::from_cli(cli(&[
            "--redis-url",
            "redis://:urlpass@127.0.0.1:6390",
            "--api-token",
            "tok-abc",
            "--jwt-secret",
            "jwt-xyz",
            "--session-secret",
            "sess-123",
        ]))
        .expect("valid");
        let shown = config.to_string();
        for secret in ["urlpass", "tok-abc", "jwt-xyz", "sess-123"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("publish_api_token=set"));
    }
}
