//! The fan-out log: a Redis stream every accepted message is appended to (with its
//! history entry, in one script) and every node reads in order, from where it stopped.
//! Unlike pub/sub, a node that lost its Redis connection (or Redis that restarted)
//! misses nothing appended after it: it resumes from its last position.

use std::{sync::Arc, time::Duration};

use redis::{AsyncConnectionConfig, FromRedisValue, Value, aio::MultiplexedConnection};
use tokio_util::sync::CancellationToken;

use super::{
    ENVELOPE_OVERHEAD, Message, NAMESPACES, deliver::NodeDelivery, fanout::Fanout, now_us, parse,
};
use crate::{
    adapter::NodeSockets,
    conn::ConnRegistry,
    history::{
        self, HistoryConfig, Keys, Offset,
        script::{AppendError, Destination, Fence, Idempotency, ReplicaWait},
    },
    metrics::{Metrics, Outcome, Source},
    redis_link::RedisLink,
};

/// Entries one read takes at most (well under a socket's send buffer: a batch is
/// delivered back to back).
pub(super) const READ_BATCH: usize = 128;
/// What one read should bring at most, in bytes: large messages are read fewer at a time
/// (a batch of 128 one-megabyte entries would be 128 MB at once).
const READ_BYTES: usize = 8 << 20;

/// Entries the next read asks for, from the size of the last batch's entries.
pub(super) fn next_batch(entries: usize, bytes: usize) -> usize {
    let average = bytes.checked_div(entries).unwrap_or(0).max(1);
    (READ_BYTES / average).clamp(1, READ_BATCH)
}
/// How long one read blocks waiting for entries (it then simply reads again).
const READ_BLOCK_MS: u64 = 1_000;

/// Appends a validated message (in its channel form `wire`) to the log and, with
/// history on, to its history stream; once per idempotency key when the message has one;
/// with a `fence`, only while it holds the publish channel's lease; with `wait`, confirmed
/// only once that many replicas have it. Returns its offset.
#[allow(clippy::too_many_arguments)]
pub async fn append(
    link: &RedisLink,
    keys: &Keys,
    history: Option<&HistoryConfig>,
    metrics: &Metrics,
    message: &Message,
    wire: &[u8],
    fence: Option<Fence<'_>>,
    wait: Option<ReplicaWait>,
) -> Result<Offset, AppendError> {
    let stream = history.map(|h| {
        (
            keys.stream(&message.namespace, message.room().as_deref()),
            h,
        )
    });
    let idempotency_key = message
        .idempotency_key
        .as_deref()
        .map(|k| keys.idempotency(k));
    let idempotency = idempotency_key.as_deref().map(|key| Idempotency {
        key,
        ttl: HistoryConfig::idempotency_ttl(history),
    });
    let room_channel = keys.room_channel(&message.namespace, message.room().as_deref());
    let mut conn = link.connection();
    let log = keys.log();
    let to = Destination {
        log: &log,
        stream: stream.as_ref().map(|(keys, h)| (keys, *h)),
        room_channel: &room_channel,
    };
    let appended = history::script::append(&mut conn, to, fence, idempotency, wait, wire).await?;
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
        .map_or(Offset::ZERO, |(o, _, _)| o))
}

/// One log entry: its offset, the message's channel form, and the log's previous id
/// when the entry names it.
type LogEntry = (Offset, Vec<u8>, Option<Offset>);

/// Stream entries `[[id, [field, value, ...]], ...]`; an entry of another shape is
/// skipped (a reader stuck on it would stop the node's delivery).
pub(super) fn entries(value: Value) -> redis::RedisResult<Vec<LogEntry>> {
    let raw = Vec::<Value>::from_redis_value(value)?;
    Ok(raw
        .into_iter()
        .filter_map(history::script::log_entry)
        .collect())
}

/// Where an entry stands against what the reader delivered last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    /// It follows what was delivered (or cannot tell: an entry without `p`).
    Follows,
    /// Entries between were trimmed before this node read them.
    Gap,
    /// It follows a position before ours: the log was lost and started again (a Redis
    /// restart without persistence).
    Restarted,
}

fn continuity(last: Offset, previous: Option<Offset>) -> Continuity {
    match previous {
        // Reading from the very start (the log's end was unknown): nothing to compare.
        _ if last == Offset::ZERO => Continuity::Follows,
        Some(previous) if previous > last => Continuity::Gap,
        Some(previous) if previous < last => Continuity::Restarted,
        _ => Continuity::Follows,
    }
}

/// A reader past this lag (ms) reports the node not ready.
pub const MAX_LAG_MS: i64 = 5_000;

/// An XREAD reply for one stream: its entries, or none on a timeout (nil).
fn read_reply(value: Value) -> redis::RedisResult<Vec<LogEntry>> {
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
    /// Where to read: a connection of its own to the link's current primary.
    pub link: RedisLink,
    pub keys: Keys,
    pub fanout: Arc<Fanout>,
    pub delivery: Arc<dyn NodeDelivery>,
    pub metrics: Arc<Metrics>,
    pub max_payload: usize,
    /// This node's sockets and their connections: cut when the reader finds a gap.
    pub sockets: Arc<dyn NodeSockets>,
    pub conns: Arc<ConnRegistry>,
    /// Replicas an entry must be on before it is delivered (see [`Reader::replicated`]).
    pub wait: Option<ReplicaWait>,
    /// Where this node records how far it read (the write a `WAIT` needs).
    pub position_key: String,
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
                Ok((mut conn, generation)) => {
                    delay = Duration::from_millis(100);
                    let error = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = self.follow(&mut conn, generation, &mut last) => e,
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

    /// A connection of its own (a blocking read would hold up the shared one) to the
    /// link's current primary, and which one that is.
    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, u64)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(READ_BLOCK_MS + 2_000)));
        let generation = self.link.generation();
        let conn = redis::Client::open(self.link.info())?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok((conn, generation))
    }

    /// Delivers batches until an error, which it returns.
    async fn follow(
        &self,
        conn: &mut MultiplexedConnection,
        generation: u64,
        last: &mut Offset,
    ) -> redis::RedisError {
        let log = self.keys.log();
        let mut count = READ_BATCH;
        loop {
            if self.link.generation() != generation {
                return redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the link moved to a new primary",
                ));
            }
            let reply: Value = match redis::cmd("XREAD")
                .arg("COUNT")
                .arg(count)
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
            if let (Some(wait), Some((newest, _, _))) = (self.wait, batch.last())
                && let Err(e) = self.replicated(conn, generation, wait, *newest).await
            {
                return e;
            }
            let full = batch.len() >= count;
            if !batch.is_empty() {
                count = next_batch(batch.len(), batch.iter().map(|(_, m, _)| m.len()).sum());
            }
            for (offset, payload, previous) in batch {
                self.check(*last, offset, previous);
                self.deliver(offset, &payload).await;
                *last = offset;
                // Let the sockets' writers run between messages of a batch.
                tokio::task::yield_now().await;
            }
            // A full batch: more is waiting, the reader is as far behind as its last entry.
            let lag_ms = if full {
                let now_ms = now_us() / 1_000;
                i64::try_from(now_ms.saturating_sub(last.ms)).unwrap_or(i64::MAX)
            } else {
                0
            };
            self.metrics.fanout_lag_ms.set(lag_ms);
        }
    }

    /// Compares an entry's predecessor with the position delivered last: a gap cuts the
    /// sockets (see [`Reader::gap`]), a log that started again is read on.
    pub(super) fn check(&self, last: Offset, offset: Offset, previous: Option<Offset>) {
        match continuity(last, previous) {
            Continuity::Follows => {}
            Continuity::Gap => self.gap(last, previous),
            Continuity::Restarted => {
                tracing::warn!(after = %last, %offset, "fan-out log started again (Redis lost its data?): reading on")
            }
        }
    }

    /// Waits until the entries just read are on `wait.replicas` replicas: delivered, an
    /// entry a failover could lose (its publish answered 503 and retried) would reach
    /// clients twice. `WAIT` covers the connection's own writes, so the reader first
    /// records its position (a write after the entries it read).
    pub(super) async fn replicated(
        &self,
        conn: &mut MultiplexedConnection,
        generation: u64,
        wait: ReplicaWait,
        newest: Offset,
    ) -> redis::RedisResult<()> {
        loop {
            let acked = history::script::confirm_replicated(
                conn,
                &self.position_key,
                &newest.to_string(),
                wait,
            )
            .await?;
            if acked >= wait.replicas {
                return Ok(());
            }
            if self.link.generation() != generation {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the link moved to a new primary",
                )));
            }
            tracing::warn!(acked, wanted = wait.replicas, %newest, "fan-out log: entries not on enough replicas yet: holding them back");
        }
    }

    /// Entries after `last` were trimmed from the log before this node read them: its
    /// sockets may have missed them. Never a silent skip: counted, and every socket's
    /// transport cut, so each client reconnects and recovers from its rooms' history
    /// (or is told `continuity_broken`).
    pub(super) fn gap(&self, last: Offset, previous: Option<Offset>) {
        self.metrics.fanout_gaps.inc();
        let sids = self.sockets.ids();
        tracing::warn!(
            after = %last,
            resumed_after = ?previous.map(|p| p.to_string()),
            sockets = sids.len(),
            "fan-out log: entries were trimmed before this node read them: cutting its sockets so they recover from history"
        );
        for sid in &sids {
            self.conns.cut(sid);
        }
    }

    pub(super) async fn deliver(&self, offset: Offset, payload: &[u8]) {
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

    fn entry_after(id: &str, m: &str, previous: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("m"), bulk(m), bulk("p"), bulk(previous)]),
        ])
    }

    #[test]
    fn entries_name_their_predecessor_and_gaps_are_found() {
        let reply = Value::Map(vec![(
            bulk("log"),
            Value::Array(vec![entry_after("5-0", "a", "3-1"), entry("6-0", "b")]),
        )]);
        let got = read_reply(reply).expect("parses");
        assert_eq!(got[0].2, Some(Offset { ms: 3, seq: 1 }));
        assert_eq!(got[1].2, None, "an entry of an older node");
        let at = |ms| Offset { ms, seq: 0 };
        let cases = [
            ("follows", at(3), Some(at(3)), Continuity::Follows),
            (
                "entries trimmed between",
                at(3),
                Some(at(4)),
                Continuity::Gap,
            ),
            (
                "the log started again",
                at(3),
                Some(at(0)),
                Continuity::Restarted,
            ),
            ("no predecessor named", at(3), None, Continuity::Follows),
            (
                "reading from the start",
                Offset::ZERO,
                Some(at(9)),
                Continuity::Follows,
            ),
        ];
        for (name, last, previous, want) in cases {
            assert_eq!(continuity(last, previous), want, "case {name}");
        }
    }

    #[test]
    fn reads_ask_for_fewer_large_entries() {
        assert_eq!(next_batch(128, 128 * 200), READ_BATCH, "small messages");
        assert_eq!(next_batch(10, 10 << 20), 8, "1 MB messages: 8 MB a read");
        assert_eq!(next_batch(1, 64 << 20), 1, "at least one");
        assert_eq!(next_batch(0, 0), READ_BATCH);
    }

    #[test]
    fn xread_replies_in_both_protocols_and_on_timeout() {
        let entries = Value::Array(vec![entry("1-0", "a"), entry("2-0", "b")]);
        let resp3 = Value::Map(vec![(bulk("log"), entries.clone())]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("log"), entries])]);
        for reply in [resp3, resp2] {
            let got = read_reply(reply).expect("parses");
            let ids: Vec<String> = got.iter().map(|(o, _, _)| o.to_string()).collect();
            assert_eq!(ids, ["1-0", "2-0"]);
            assert_eq!(got[1].1, b"b");
        }
        assert!(read_reply(Value::Nil).expect("timeout").is_empty());
    }
}
