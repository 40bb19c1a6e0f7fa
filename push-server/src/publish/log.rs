//! The fan-out log: a Redis stream every accepted message is appended to (with its
//! history entry, in one script) and every node reads in order, from where it stopped.
//! Unlike pub/sub, a node that lost its Redis connection (or Redis that restarted)
//! misses nothing appended after it: it resumes from its last position.

use std::{sync::Arc, time::Duration};

use redis::{
    AsyncConnectionConfig, ConnectionInfo, FromRedisValue, Value, aio::MultiplexedConnection,
};
use tokio_util::sync::CancellationToken;

use super::{ENVELOPE_OVERHEAD, Message, NAMESPACES, deliver::NodeDelivery, fanout::Fanout, parse};
use crate::{
    history::{self, HistoryConfig, Keys, Offset},
    metrics::{Metrics, Outcome, Source},
    redis_link::RedisLink,
};

/// Entries one read takes at most (well under a socket's send buffer: a batch is
/// delivered back to back).
const READ_BATCH: usize = 128;
/// How long one read blocks waiting for entries (it then simply reads again).
const READ_BLOCK_MS: u64 = 1_000;

/// Appends a validated message (in its channel form `wire`) to the log and, with
/// history on, to its history stream. Returns its offset.
pub async fn append(
    link: &RedisLink,
    keys: &Keys,
    history: Option<&HistoryConfig>,
    metrics: &Metrics,
    message: &Message,
    wire: &[u8],
) -> redis::RedisResult<Offset> {
    let stream = history.map(|h| {
        (
            keys.stream(&message.namespace, message.room().as_deref()),
            h,
        )
    });
    let mut conn = link.connection();
    let appended = history::script::append(
        &mut conn,
        &keys.log(),
        stream.as_ref().map(|(keys, h)| (keys, *h)),
        wire,
    )
    .await?;
    if let Some(length) = appended.history_length {
        metrics.history_length.observe(length as f64);
    }
    Ok(appended.offset)
}

/// The log's last position now (`0-0` when empty): a starting node reads after it.
pub async fn end(link: &RedisLink, keys: &Keys) -> redis::RedisResult<Offset> {
    let last: Value = redis::cmd("XREVRANGE")
        .arg(keys.log())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut link.connection())
        .await?;
    Ok(entries(last)?
        .into_iter()
        .next()
        .map_or(Offset::ZERO, |(o, _)| o))
}

/// Stream entries `[[id, [field, value]], ...]`; an entry of another shape is skipped
/// (a reader stuck on it would stop the node's delivery).
fn entries(value: Value) -> redis::RedisResult<Vec<(Offset, Vec<u8>)>> {
    let raw = Vec::<Value>::from_redis_value(value)?;
    Ok(raw.into_iter().filter_map(history::script::entry).collect())
}

/// An XREAD reply for one stream: its entries, or none on a timeout (nil).
fn read_reply(value: Value) -> redis::RedisResult<Vec<(Offset, Vec<u8>)>> {
    let streams: Option<Vec<(String, Value)>> = match value {
        Value::Nil => None,
        // RESP3 answers XREAD with a map {stream: entries}.
        Value::Map(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| Ok((String::from_redis_value(k)?, v)))
                .collect::<redis::RedisResult<_>>()?,
        ),
        other => Some(FromRedisValue::from_redis_value(other)?),
    };
    match streams.and_then(|s| s.into_iter().next()) {
        Some((_, value)) => entries(value),
        None => Ok(Vec::new()),
    }
}

/// What the reader needs besides the connection.
pub struct Reader {
    pub info: ConnectionInfo,
    pub keys: Keys,
    pub fanout: Arc<Fanout>,
    pub delivery: Arc<dyn NodeDelivery>,
    pub metrics: Arc<Metrics>,
    pub max_payload: usize,
}

impl Reader {
    /// Reads and delivers the log after `start` until `stop` fires, reconnecting (and
    /// resuming from the last delivered position) after any Redis error.
    pub async fn run(self, start: Offset, stop: CancellationToken) {
        let mut last = start;
        let mut delay = Duration::from_millis(100);
        loop {
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                c = self.connect() => c,
            };
            match connected {
                Ok(mut conn) => {
                    delay = Duration::from_millis(100);
                    let error = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = self.follow(&mut conn, &mut last) => e,
                    };
                    tracing::warn!(error = %error, after = %last, "fan-out log read failed: resuming after reconnect");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "fan-out log: redis not reachable")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// A connection of its own: a blocking read would hold up the shared one.
    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(READ_BLOCK_MS + 2_000)));
        redis::Client::open(self.info.clone())?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Delivers batches until an error, which it returns.
    async fn follow(
        &self,
        conn: &mut MultiplexedConnection,
        last: &mut Offset,
    ) -> redis::RedisError {
        let log = self.keys.log();
        loop {
            let reply: Value = match redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&log)
                .arg(last.to_string())
                .query_async(conn)
                .await
            {
                Ok(reply) => reply,
                Err(e) => return e,
            };
            let batch = match read_reply(reply) {
                Ok(batch) => batch,
                Err(e) => return e,
            };
            for (offset, payload) in batch {
                self.deliver(offset, &payload).await;
                *last = offset;
                // Let the sockets' writers run between messages of a batch.
                tokio::task::yield_now().await;
            }
        }
    }

    async fn deliver(&self, offset: Offset, payload: &[u8]) {
        // The API refused bodies over the limit; a backend writing the log directly may not.
        if payload.len() > self.max_payload + ENVELOPE_OVERHEAD {
            self.metrics.publish(Source::redis, Outcome::too_large);
            tracing::warn!(bytes = payload.len(), %offset, "log entry over the payload limit: skipped");
            return;
        }
        match parse(payload, NAMESPACES) {
            Ok(message) => {
                self.fanout
                    .deliver(self.delivery.as_ref(), offset, message)
                    .await
            }
            Err(e) => tracing::warn!(error = %e, %offset, "invalid log entry: skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, m: &str) -> Value {
        Value::Array(vec![bulk(id), Value::Array(vec![bulk("m"), bulk(m)])])
    }

    #[test]
    fn xread_replies_in_both_protocols_and_on_timeout() {
        let entries = Value::Array(vec![entry("1-0", "a"), entry("2-0", "b")]);
        let resp3 = Value::Map(vec![(bulk("log"), entries.clone())]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("log"), entries])]);
        for reply in [resp3, resp2] {
            let got = read_reply(reply).expect("parses");
            let ids: Vec<String> = got.iter().map(|(o, _)| o.to_string()).collect();
            assert_eq!(ids, ["1-0", "2-0"]);
            assert_eq!(got[1].1, b"b");
        }
        assert!(read_reply(Value::Nil).expect("timeout").is_empty());
    }
}
