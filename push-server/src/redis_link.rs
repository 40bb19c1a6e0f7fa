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

/// How often the Sentinels are asked which node is the primary.
const SENTINEL_POLL: Duration = Duration::from_millis(250);

/// Redis Sentinels and the name they monitor the primary under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    pub addresses: Vec<(String, u16)>,
    pub master: String,
}

impl Sentinels {
    /// `host:port` entries (blank ones skipped) and the master name.
    pub fn parse(entries: &[String], master: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            var: env::REDIS_SENTINELS,
            reason,
        };
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
            return Err(ConfigError::Empty(env::REDIS_SENTINELS));
        }
        if master.is_empty() {
            return Err(ConfigError::Empty(env::REDIS_SENTINEL_MASTER));
        }
        Ok(Self {
            addresses,
            master: master.to_owned(),
        })
    }

    /// The primary's address as the first Sentinel that answers names it.
    pub async fn primary(&self) -> Result<(String, u16), RedisError> {
        let mut last = None;
        for (host, port) in &self.addresses {
            match self.ask(host, *port).await {
                Ok(Some(primary)) => return Ok(primary),
                Ok(None) => {}
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((
                redis::ErrorKind::Io,
                "no Sentinel knows the primary",
                self.master.clone(),
            ))
        }))
    }

    async fn ask(&self, host: &str, port: u16) -> Result<Option<(String, u16)>, RedisError> {
        let info = ConnectionAddr::Tcp(host.to_owned(), port).into_connection_info()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let mut conn: MultiplexedConnection = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
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
    sentinels: Option<Arc<Sentinels>>,
}

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
    info.clone().set_addr(ConnectionAddr::Tcp(host, port))
}

fn addr_of(info: &ConnectionInfo) -> Option<(String, u16)> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
        _ => None,
    }
}

impl RedisLink {
    /// Connects once (to the primary the Sentinels name, if any); afterwards the manager
    /// reconnects (with backoff) by itself, and [`RedisLink::follow`] moves it to a new
    /// primary.
    pub async fn connect(
        info: ConnectionInfo,
        sentinels: Option<Sentinels>,
    ) -> Result<Self, RedisError> {
        let info = match &sentinels {
            Some(sentinels) => {
                let (host, port) = sentinels.primary().await?;
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
            sentinels: sentinels.map(Arc::new),
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
        sentinels: Option<Sentinels>,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::connect(info.clone(), sentinels.clone()).await {
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

    /// Which primary the link is on: changes when it moves to another one.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// A handle for ordinary commands (GET, PUBLISH).
    pub fn connection(&self) -> ConnectionManager {
        self.current().conn.clone()
    }

    /// A handle for reads with long replies (a recovery's history).
    pub fn bulk_connection(&self) -> ConnectionManager {
        self.current().bulk.clone()
    }

    /// With Sentinels: asks them every [`SENTINEL_POLL`] which node is the primary and,
    /// when it changed (a failover), moves every connection there and subscribes again.
    /// Ends when `stop` fires; returns at once without Sentinels.
    pub async fn follow(self, metrics: Arc<Metrics>, stop: CancellationToken) {
        let Some(sentinels) = self.sentinels.clone() else {
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SENTINEL_POLL) => {}
            }
            let Ok(primary) = sentinels.primary().await else {
                continue;
            };
            let current = self.current();
            if addr_of(&current.info).as_ref() == Some(&primary) {
                continue;
            }
            let (host, port) = primary;
            let generation = current.generation + 1;
            let info = at(&current.info, host.clone(), port);
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
                    metrics.redis_failovers.inc();
                    // Connected to it just now: no need to wait for the next PING to say so.
                    metrics.redis_up.set(1);
                    tracing::warn!(primary = %format!("{host}:{port}"), "redis failover: following the new primary");
                }
                Err(e) => {
                    tracing::warn!(error = %e, primary = %format!("{host}:{port}"), "redis: the new primary does not answer yet")
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

/// Parses the user's Redis URL, forces RESP3 (the adapter's push messages need it)
/// and merges a separately supplied password.
pub fn connection_info(url: &str, password: Option<&str>) -> Result<ConnectionInfo, ConfigError> {
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
    Ok(info.set_redis_settings(settings))
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
    fn redis_url_gets_resp3_and_the_password() {
        let info = connection_info("redis://127.0.0.1:6390/2", Some("s3cret")).expect("valid");
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 2);
        for url in [
            "redis://127.0.0.1:6390/?protocol=resp3",
            "redis://127.0.0.1:6390/?protocol=RESP3",
        ] {
            let info = connection_info(url, None).expect(url);
            assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        }
    }
}
