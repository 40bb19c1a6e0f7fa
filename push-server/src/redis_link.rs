//! The node's one Redis connection: a reconnecting `ConnectionManager` that resubscribes
//! after an outage, shared by the socket.io adapter (as its [`Driver`]), the publish
//! channel subscriber and the session store.
//!
//! Why not the adapter's own `RedisDriver`: it holds a plain multiplexed connection that
//! never reconnects, so cross-node fan-out would stay dead after a Redis restart.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, RwLock},
    time::Duration,
};

use push_contract::env;
use redis::{
    AsyncCommands, ConnectionInfo, FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisError, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{error::ConfigError, metrics::Metrics};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Cheap to clone; clones share the connection and the channel handlers.
#[derive(Clone)]
pub struct RedisLink {
    conn: ConnectionManager,
    /// A second connection for reads with long replies (recovery), so commands on
    /// `conn` (publishes) do not queue behind them.
    bulk: ConnectionManager,
    handlers: Handlers,
    info: ConnectionInfo,
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

impl RedisLink {
    /// Connects once; afterwards the manager reconnects (with backoff) by itself.
    pub async fn connect(info: ConnectionInfo) -> Result<Self, RedisError> {
        let client = redis::Client::open(info.clone())?;
        let handlers: Handlers = Arc::default();
        let push_handlers = handlers.clone();
        let reconnecting = || {
            ConnectionManagerConfig::new()
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
        };
        let config = reconnecting()
            .set_push_sender(move |push: PushInfo| {
                dispatch(push, &push_handlers);
                Ok::<(), Infallible>(())
            })
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let bulk = ConnectionManager::new_with_config(client, reconnecting()).await?;
        Ok(Self {
            conn,
            bulk,
            handlers,
            info,
        })
    }

    /// Connects, retrying with backoff until Redis answers or `cancel` fires.
    pub async fn connect_with_retry(
        info: ConnectionInfo,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::connect(info.clone()).await {
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

    /// Where the link connects (for a connection of one's own, e.g. a blocking read).
    pub fn info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    /// A handle for ordinary commands (GET, PUBLISH).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A handle for reads with long replies (a recovery's history).
    pub fn bulk_connection(&self) -> ConnectionManager {
        self.bulk.clone()
    }

    /// PINGs every `period`, keeping `redis_up` true to the link and nudging the manager
    /// to reconnect after an outage. Ends when `stop` fires.
    pub async fn watch(self, metrics: Arc<Metrics>, period: Duration, stop: CancellationToken) {
        let mut was_up = true;
        loop {
            let mut conn = self.conn.clone();
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
        self.conn.clone().publish::<_, _, Value>(chan, val).await?;
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
        self.conn.clone().subscribe(chan.as_str()).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.remove(&chan);
        }
        self.conn.clone().unsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.conn.clone())
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
