//! The node's Redis connection: a reconnecting `ConnectionManager` that resubscribes
//! after an outage, shared by the socket.io adapter (as its [`Driver`]), the publish
//! channel subscriber and the session store; with Sentinels, it follows the primary they
//! name through a failover (new connections, the same subscriptions), with no restart.
//!
//! Why not the adapter's own `RedisDriver`: it holds a plain multiplexed connection that
//! never reconnects, so cross-node fan-out would stay dead after a Redis restart.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use push_contract::env;
use redis::{
    AsyncCommands, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ProtocolVersion, PushInfo, PushKind, RedisError, Value,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{error::ConfigError, metrics::Metrics};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Between attempts of [`RedisLink::subscribed_until`] while Redis is away.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// How often the Sentinels (or cluster nodes) are asked which node is the primary.
const PRIMARY_POLL: Duration = Duration::from_millis(250);

/// Redis Sentinels and the name they monitor the primary under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    pub addresses: Vec<(String, u16)>,
    pub master: String,
}

impl Sentinels {
    /// `host:port` entries (blank ones skipped) and the master name.
    pub fn parse(entries: &[String], master: &str) -> Result<Self, ConfigError> {
        let addresses = parse_addresses(entries, env::REDIS_SENTINELS)?;
        if master.is_empty() {
            return Err(ConfigError::Empty(env::REDIS_SENTINEL_MASTER));
        }
        Ok(Self {
            addresses,
            master: master.to_owned(),
        })
    }

    /// The primary's address as the first Sentinel that answers names it (over TLS when
    /// `info`, the link's, is).
    pub async fn primary(&self, info: &ConnectionInfo) -> Result<(String, u16), RedisError> {
        first_named(
            &self.addresses,
            |host, port| self.ask(info, host, port),
            ("no Sentinel knows the primary", self.master.clone()),
        )
        .await
    }

    async fn ask(
        &self,
        info: &ConnectionInfo,
        host: &str,
        port: u16,
    ) -> Result<Option<(String, u16)>, RedisError> {
        // A Sentinel has no password of the primary's: only the address and TLS carry over.
        let mut conn =
            short_lived(addr_at(info, host.to_owned(), port).into_connection_info()?).await?;
        let reply: Option<Vec<String>> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await?;
        Ok(reply.and_then(|r| match r.as_slice() {
            [host, port] => Some((host.clone(), port.parse().ok()?)),
            _ => None,
        }))
    }
}

/// The first address `ask` gets a primary from, in order; else the last error, or
/// `nobody` (description, detail) when every one answered that it knows none.
async fn first_named<'a, Ask, Answer>(
    addresses: &'a [(String, u16)],
    ask: Ask,
    nobody: (&'static str, String),
) -> Result<(String, u16), RedisError>
where
    Ask: Fn(&'a str, u16) -> Answer,
    Answer: std::future::Future<Output = Result<Option<(String, u16)>, RedisError>>,
{
    let mut last = None;
    for (host, port) in addresses {
        match ask(host, *port).await {
            Ok(Some(primary)) => return Ok(primary),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, nobody.0, nobody.1))))
}

/// A connection for one question (which node is the primary): a node that does not
/// answer within half a second is skipped for the next.
async fn short_lived(info: ConnectionInfo) -> Result<MultiplexedConnection, RedisError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    redis::Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `host:port` entries of `var` (blank ones skipped; at least one).
fn parse_addresses(
    entries: &[String],
    var: &'static str,
) -> Result<Vec<(String, u16)>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { var, reason };
    let mut addresses = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("{entry:?} is not host:port")))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid(format!("{entry:?}: bad port")))?;
        if host.is_empty() {
            return Err(invalid(format!("{entry:?}: no host")));
        }
        addresses.push((host.trim_matches(['[', ']']).to_owned(), port));
    }
    if addresses.is_empty() {
        return Err(ConfigError::Empty(var));
    }
    Ok(addresses)
}

/// Redis Cluster: every key of this cluster carries one hash tag, so all of them live in
/// one slot; the link is on the primary that owns it, as the seed nodes say. A failover
/// of that primary (its replica promoted by the cluster itself) moves the slot, and the
/// link follows it like a Sentinel-named primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodes {
    pub addresses: Vec<(String, u16)>,
    /// The slot of every key (see [`key_slot`]).
    pub slot: u16,
}

impl ClusterNodes {
    /// Seed nodes (`host:port` each) and the key prefix every key starts with.
    pub fn parse(entries: &[String], key_prefix: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            addresses: parse_addresses(entries, env::REDIS_CLUSTER)?,
            slot: key_slot(key_prefix.as_bytes()),
        })
    }

    /// The primary owning [`ClusterNodes::slot`] as the first seed that answers names it.
    async fn primary(&self, info: &ConnectionInfo) -> Result<(String, u16), RedisError> {
        first_named(
            &self.addresses,
            |host, port| self.ask(info, host, port),
            (
                "no cluster node knows the slot's primary",
                self.slot.to_string(),
            ),
        )
        .await
    }

    async fn ask(
        &self,
        info: &ConnectionInfo,
        host: &str,
        port: u16,
    ) -> Result<Option<(String, u16)>, RedisError> {
        let mut conn = short_lived(at(info, host.to_owned(), port)).await?;
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        Ok(slot_owner(&reply, self.slot, host))
    }
}

/// The primary serving `slot` in a `CLUSTER SLOTS` reply; a node announced without a
/// host (`""` or `"?"`) is on `asked`, the node that answered.
fn slot_owner(reply: &Value, slot: u16, asked: &str) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(items) = range else {
            return None;
        };
        let [
            Value::Int(start),
            Value::Int(end),
            Value::Array(primary),
            ..,
        ] = items.as_slice()
        else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        let [host, Value::Int(port), ..] = primary.as_slice() else {
            return None;
        };
        let host = String::from_redis_value(host.clone()).ok()?;
        let host = if host.is_empty() || host == "?" {
            asked.to_owned()
        } else {
            host
        };
        Some((host, u16::try_from(*port).ok()?))
    })
}

/// Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Where the primary is when it can move: Sentinels name it, or a Redis Cluster's slot
/// map does. Without one, the link stays on the URL's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Sentinels(Sentinels),
    Cluster(ClusterNodes),
}

impl Topology {
    /// The primary's address now (`info` carries the credentials a cluster node wants).
    pub async fn primary(&self, info: &ConnectionInfo) -> Result<(String, u16), RedisError> {
        match self {
            Self::Sentinels(sentinels) => sentinels.primary(info).await,
            Self::Cluster(nodes) => nodes.primary(info).await,
        }
    }
}

/// The connections to the current primary.
struct Current {
    conn: ConnectionManager,
    /// For reads with long replies (recovery), so commands on `conn` (publishes) do not
    /// queue behind them.
    bulk: ConnectionManager,
    info: ConnectionInfo,
    /// Bumped on every move to another primary.
    generation: u64,
}

/// Cheap to clone; clones share the connections and the channel handlers.
#[derive(Clone)]
pub struct RedisLink {
    current: Arc<RwLock<Arc<Current>>>,
    /// The generation whose pushes are dispatched (an older connection's are not).
    dispatching: Arc<AtomicU64>,
    handlers: Handlers,
    topology: Option<Arc<Topology>>,
    /// With a Redis Cluster: connections to the other primaries, for keys of other slots.
    elsewhere: Arc<std::sync::Mutex<HashMap<(String, u16), MultiplexedConnection>>>,
}

/// Most other cluster primaries [`RedisLink::get_anywhere`] keeps a connection to.
const ELSEWHERE_MAX: usize = 64;

/// Splits a RESP3 push into (channel, payload) when it is a pub/sub message.
fn pubsub_message(push: PushInfo) -> Option<ChanItem> {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return None;
    }
    let mut data = push.data.into_iter();
    let channel = String::from_redis_value(data.next()?).ok()?;
    let payload = Vec::<u8>::from_redis_value(data.next()?).ok()?;
    Some((channel, payload))
}

fn dispatch(push: PushInfo, handlers: &Handlers) {
    let Some((channel, payload)) = pubsub_message(push) else {
        return;
    };
    let Ok(handlers) = handlers.read() else {
        return;
    };
    if let Some(tx) = handlers.get(&channel)
        && let Err(e) = tx.try_send((channel, payload))
    {
        tracing::warn!(error = %e, "redis pub/sub consumer is behind: message dropped");
    }
}

/// `info` pointed at `host:port` (the primary a Sentinel named).
fn at(info: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    info.clone().set_addr(addr_at(info, host, port))
}

/// `host:port`, with TLS (and its CA) when `info` has it.
fn addr_at(info: &ConnectionInfo, host: String, port: u16) -> ConnectionAddr {
    match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    }
}

/// The node a `MOVED` reply names (`host:port`; an empty host is the node that said it).
fn moved_to(addr: &str, asked: &ConnectionInfo) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match (host.trim_matches(['[', ']']), addr_of(asked)) {
        ("", Some((asked, _))) => asked,
        ("", None) => return None,
        (host, _) => host.to_owned(),
    };
    Some((host, port))
}

fn addr_of(info: &ConnectionInfo) -> Option<(String, u16)> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

impl RedisLink {
    /// Connects once (to the primary the topology names, if any); afterwards the manager
    /// reconnects (with backoff) by itself, and [`RedisLink::follow`] moves it to a new
    /// primary.
    pub async fn connect(
        info: ConnectionInfo,
        topology: Option<Topology>,
    ) -> Result<Self, RedisError> {
        let info = match &topology {
            Some(topology) => {
                let (host, port) = topology.primary(&info).await?;
                at(&info, host, port)
            }
            None => info,
        };
        let handlers: Handlers = Arc::default();
        let dispatching = Arc::new(AtomicU64::new(0));
        let current = Self::open(info, 0, &handlers, &dispatching).await?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(current))),
            dispatching,
            handlers,
            topology: topology.map(Arc::new),
            elsewhere: Arc::default(),
        })
    }

    async fn open(
        info: ConnectionInfo,
        generation: u64,
        handlers: &Handlers,
        dispatching: &Arc<AtomicU64>,
    ) -> Result<Current, RedisError> {
        let client = redis::Client::open(info.clone())?;
        let reconnecting = || {
            ConnectionManagerConfig::new()
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
        };
        let push_handlers = handlers.clone();
        let push_dispatching = dispatching.clone();
        let config = reconnecting()
            .set_push_sender(move |push: PushInfo| {
                if push_dispatching.load(Ordering::Acquire) == generation {
                    dispatch(push, &push_handlers);
                }
                Ok::<(), Infallible>(())
            })
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let bulk = ConnectionManager::new_with_config(client, reconnecting()).await?;
        Ok(Current {
            conn,
            bulk,
            info,
            generation,
        })
    }

    fn current(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Connects, retrying with backoff until Redis answers or `cancel` fires.
    pub async fn connect_with_retry(
        info: ConnectionInfo,
        topology: Option<Topology>,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::connect(info.clone(), topology.clone()).await {
                Ok(link) => return Some(link),
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "redis not reachable"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Where the link connects now (for a connection of one's own, e.g. a blocking read).
    pub fn info(&self) -> ConnectionInfo {
        self.current().info.clone()
    }

    /// `host:port` of the primary the link is on.
    pub fn primary(&self) -> String {
        addr_of(&self.current().info)
            .map_or_else(String::new, |(host, port)| format!("{host}:{port}"))
    }

    /// Which primary the link is on: changes when it moves to another one.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// A subscription to `channel` for a listener that runs until `stop` (the disconnect
    /// orders, presence questions): tried every [`SUBSCRIBE_RETRY`] while Redis is away
    /// (`None`: stopped first). A failover resubscribes by itself.
    pub async fn subscribed_until(
        &self,
        channel: &str,
        buffer: usize,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<MessageStream<ChanItem>> {
        loop {
            match self.subscribe(channel.to_owned(), buffer).await {
                Ok(stream) => return Some(stream),
                Err(e) => tracing::warn!(error = %e, %channel, "could not subscribe: retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(SUBSCRIBE_RETRY) => {}
            }
        }
    }

    /// A handle for ordinary commands (GET, PUBLISH).
    pub fn connection(&self) -> ConnectionManager {
        self.current().conn.clone()
    }

    /// A handle for reads with long replies (a recovery's history).
    pub fn bulk_connection(&self) -> ConnectionManager {
        self.current().bulk.clone()
    }

    /// GET of a key that is not this cluster's (a web app's session): with a Redis
    /// Cluster its slot may be on another primary, which the `MOVED` reply names; it is
    /// read there.
    pub async fn get_anywhere(&self, key: &str) -> Result<Option<String>, RedisError> {
        let moved = match self.connection().get(key).await {
            Err(e) if matches!(self.topology.as_deref(), Some(Topology::Cluster(_))) => match e
                .redirect_node()
                .and_then(|(addr, _slot)| moved_to(addr, &self.info()))
            {
                Some(node) => node,
                None => return Err(e),
            },
            other => return other,
        };
        let cached = self
            .elsewhere
            .lock()
            .ok()
            .and_then(|c| c.get(&moved).cloned());
        let mut conn = match cached {
            Some(conn) => conn,
            None => {
                let info = at(&self.info(), moved.0.clone(), moved.1);
                let conn = redis::Client::open(info)?
                    .get_multiplexed_async_connection()
                    .await?;
                if let Ok(mut cache) = self.elsewhere.lock() {
                    if cache.len() >= ELSEWHERE_MAX {
                        cache.clear();
                    }
                    cache.insert(moved.clone(), conn.clone());
                }
                conn
            }
        };
        let got = conn.get(key).await;
        if got.is_err()
            && let Ok(mut cache) = self.elsewhere.lock()
        {
            // Dropped, so the next lookup connects afresh (the node may have failed over).
            cache.remove(&moved);
        }
        got
    }

    /// With Sentinels or a Redis Cluster: asks every [`PRIMARY_POLL`] which node is the
    /// primary and, when it changed (a failover), moves every connection there and
    /// subscribes again. Ends when `stop` fires; returns at once without either.
    pub async fn follow(self, metrics: Arc<Metrics>, stop: CancellationToken) {
        let Some(topology) = self.topology.clone() else {
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PRIMARY_POLL) => {}
            }
            let current = self.current();
            let Ok(primary) = topology.primary(&current.info).await else {
                continue;
            };
            if addr_of(&current.info).as_ref() == Some(&primary) {
                continue;
            }
            let (host, port) = primary;
            let address = format!("{host}:{port}");
            let generation = current.generation + 1;
            let info = at(&current.info, host, port);
            match Self::open(info, generation, &self.handlers, &self.dispatching).await {
                Ok(next) => {
                    let channels: Vec<String> = self
                        .handlers
                        .read()
                        .map(|h| h.keys().cloned().collect())
                        .unwrap_or_default();
                    let mut conn = next.conn.clone();
                    self.dispatching.store(generation, Ordering::Release);
                    for channel in channels {
                        if let Err(e) = conn.subscribe(channel.as_str()).await {
                            tracing::warn!(error = %e, %channel, "not subscribed again on the new primary");
                        }
                    }
                    match self.current.write() {
                        Ok(mut slot) => *slot = Arc::new(next),
                        Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
                    }
                    metrics.redis_failover(&address);
                    // Connected to it just now: no need to wait for the next PING to say so.
                    metrics.redis_up.set(1);
                    tracing::warn!(primary = %address, "redis failover: following the new primary");
                }
                Err(e) => {
                    tracing::warn!(error = %e, primary = %address, "redis: the new primary does not answer yet")
                }
            }
        }
    }

    /// PINGs every `period`, keeping `redis_up` true to the link and nudging the manager
    /// to reconnect after an outage. Ends when `stop` fires.
    pub async fn watch(self, metrics: Arc<Metrics>, period: Duration, stop: CancellationToken) {
        let mut was_up = true;
        loop {
            let mut conn = self.connection();
            let up = matches!(
                tokio::time::timeout(period, redis::cmd("PING").query_async::<Value>(&mut conn))
                    .await,
                Ok(Ok(_))
            );
            metrics.redis_up.set(i64::from(up));
            if up != was_up {
                if up {
                    tracing::info!("redis link restored");
                } else {
                    tracing::warn!("redis link down: no cluster fan-out until it is back");
                }
                was_up = up;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    }
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Parses the user's Redis URL, forces RESP3 (the adapter's push messages need it),
/// merges a separately supplied password and, for `rediss://`, the CA certificates (PEM)
/// to trust instead of the public roots.
pub fn connection_info(
    url: &str,
    password: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> Result<ConnectionInfo, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: env::REDIS_URL,
        reason,
    };
    // RESP3 is forced below; a `protocol` parameter may only ask for it (any case).
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("protocol") => {
                if !value.eq_ignore_ascii_case("resp3") {
                    return Err(invalid(
                        "only protocol=resp3 is supported (the fan-out adapter needs RESP3)".into(),
                    ));
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| invalid(e.to_string()))?;
    let mut settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    if let Some(password) = password {
        if password.is_empty() {
            return Err(ConfigError::Empty(env::REDIS_PASSWORD));
        }
        settings = settings.set_password(password);
    }
    let info = info.set_redis_settings(settings);
    let Some(ca_pem) = ca_pem else {
        return Ok(info);
    };
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(ConfigError::Requires(env::REDIS_CA_FILE, "a rediss:// URL"));
    }
    // An empty trust store would refuse every server later, with a vaguer error.
    if !ca_pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(ConfigError::Invalid {
            var: env::REDIS_CA_FILE,
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        });
    }
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    };
    redis::Client::build_with_tls(info, certificates)
        .map(|client| client.get_connection_info().clone())
        .map_err(|e| ConfigError::Invalid {
            var: env::REDIS_CA_FILE,
            reason: e.to_string(),
        })
}

impl Driver for RedisLink {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.connection().publish::<_, _, Value>(chan, val).await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.insert(chan.clone(), tx);
        }
        self.connection().subscribe(chan.as_str()).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.remove(&chan);
        }
        self.connection().unsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.connection())
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pubsub_messages_are_dispatched() {
        let message = PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(b"push:publish".to_vec()),
                Value::BulkString(b"{}".to_vec()),
            ],
        };
        assert_eq!(
            pubsub_message(message),
            Some(("push:publish".into(), b"{}".to_vec()))
        );
        let short = PushInfo {
            kind: PushKind::Message,
            data: vec![Value::BulkString(b"c".to_vec())],
        };
        assert_eq!(
            pubsub_message(short),
            None,
            "a message without payload is skipped, not a panic"
        );
        let other = PushInfo {
            kind: PushKind::Subscribe,
            data: vec![],
        };
        assert_eq!(pubsub_message(other), None);
    }

    #[test]
    fn sentinel_addresses_parse_strictly() {
        let entries = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        let got = Sentinels::parse(
            &entries(&["127.0.0.1:26379", " s2.example:26380 ", ""]),
            "pc",
        )
        .expect("valid");
        assert_eq!(
            got.addresses,
            [("127.0.0.1".into(), 26379), ("s2.example".into(), 26380)]
        );
        assert_eq!(got.master, "pc");
        for bad in [&["nohost"][..], &["h:x"], &[":1"], &[""]] {
            assert!(Sentinels::parse(&entries(bad), "pc").is_err(), "{bad:?}");
        }
        assert!(
            Sentinels::parse(&entries(&["h:1"]), "").is_err(),
            "no master name"
        );
    }

    #[test]
    fn a_moved_reply_names_host_and_port() {
        let asked = connection_info("redis://10.0.0.1:7000", None, None).expect("valid");
        assert_eq!(
            moved_to("10.0.0.2:7001", &asked),
            Some(("10.0.0.2".into(), 7001))
        );
        assert_eq!(moved_to(":7002", &asked), Some(("10.0.0.1".into(), 7002)));
        assert_eq!(moved_to("[::1]:7003", &asked), Some(("::1".into(), 7003)));
        assert_eq!(moved_to("nonsense", &asked), None);
        assert_eq!(moved_to("h:99999", &asked), None);
    }

    #[test]
    fn key_slots_are_redis_clusters() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{}x"),
            key_slot(b"{}x"),
            "an empty tag hashes the key"
        );
        assert_ne!(key_slot(b"{}x"), key_slot(b""));
        assert_eq!(key_slot(b"{push:publish}:log"), key_slot(b"push:publish"));
    }

    #[test]
    fn the_slot_owner_is_read_from_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start: i64, end: i64, primary: Value| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                primary,
                node("10.0.0.9", 7009),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 5460, node("10.0.0.1", 7000)),
            range(5461, 10922, node("", 7001)),
            range(10923, 16383, node("?", 7002)),
        ]);
        assert_eq!(
            slot_owner(&reply, 0, "seed"),
            Some(("10.0.0.1".into(), 7000))
        );
        assert_eq!(
            slot_owner(&reply, 5461, "seed"),
            Some(("seed".into(), 7001))
        );
        assert_eq!(
            slot_owner(&reply, 16383, "seed"),
            Some(("seed".into(), 7002))
        );
        let uncovered = Value::Array(vec![range(0, 10, node("h", 1))]);
        assert_eq!(slot_owner(&uncovered, 11, "seed"), None);
        assert_eq!(slot_owner(&Value::Nil, 0, "seed"), None, "no panic on junk");
    }

    #[test]
    fn redis_url_gets_resp3_and_the_password() {
        let info =
            connection_info("redis://127.0.0.1:6390/2", Some("s3cret"), None).expect("valid");
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 2);
        for url in [
            "redis://127.0.0.1:6390/?protocol=resp3",
            "redis://127.0.0.1:6390/?protocol=RESP3",
        ] {
            let info = connection_info(url, None, None).expect(url);
            assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        }
    }
}
