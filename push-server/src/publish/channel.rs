//! The Redis publish channel backends may PUBLISH to. Every node subscribes and keeps
//! what arrives in a short buffer; one node at a time, the holder of a lease in Redis,
//! takes it: appends it to the fan-out log (or refuses it, counted), so each message
//! gets one offset and is delivered once by every node. PUBLISH answers how many nodes
//! received the message (0: none, nothing was taken).
//!
//! Exactly once across a change of holder: the append script runs only while its node
//! holds the lease (a holder that stalled past its lease cannot append what the next one
//! appends), and it records the digests of the last messages taken. A node that takes
//! the lease finds in its own buffer where that record ends — every subscriber sees the
//! channel's messages in the same order — and goes on from there, so what the previous
//! holder received but did not take is not lost.

use std::{
    collections::VecDeque,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use redis::Script;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio_util::sync::CancellationToken;

use super::{ENVELOPE_OVERHEAD, NAMESPACES, envelope, log, now_us, parse};
use crate::{
    history::{
        HistoryConfig, Keys,
        script::{AppendError, Fence, ReplicaWait, TAKEN_KEPT},
    },
    metrics::{Metrics, Outcome, Source},
    redis_link::RedisLink,
};

/// Buffer between the Redis connection and this task (messages).
const CHANNEL_BUFFER: usize = 8192;
/// What a node keeps of the channel: by count, bytes and age. A holder that falls this
/// far behind refuses (and counts) the oldest; a node that does not hold the lease keeps
/// the last `KEPT_FOR` of it in case the holder stalls before taking it.
const BUFFER_MESSAGES: usize = 8192;
const BUFFER_BYTES: usize = 16 << 20;
const KEPT_FOR: Duration = Duration::from_secs(30);
/// The lease lasts this long unless renewed; it is renewed every [`LEASE_RENEW`].
const LEASE: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);

/// Takes the lease when free, renews it when ours: 1 = ours.
const TAKE_OR_RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"#;
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;
/// Records a message taken but not appended (refused), while the lease is ours.
const TAKEN: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return 1
"#;
/// Hashed once: the lease is renewed every second.
static TAKE_OR_RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_OR_RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
static TAKEN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKEN));

/// A stable digest of a message (FNV-1a, 64 bits), the same on every node.
pub fn digest(payload: &[u8]) -> String {
    let hash = payload.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// How many of `buffered` (digests, oldest first) the last holder already took, given
/// the digests it recorded last (`taken`, oldest first): the latest place where the
/// buffer ends with the record (the whole of it, or what of it fits after the buffer's
/// start). No place: none of them (the record is older than the buffer, or empty).
pub fn already_taken(buffered: &[&str], taken: &[String]) -> usize {
    if taken.is_empty() {
        return 0;
    }
    (1..=buffered.len())
        .rev()
        .find(|&end| {
            let n = taken.len().min(end);
            buffered[end - n..end]
                .iter()
                .zip(&taken[taken.len() - n..])
                .all(|(b, t)| *b == t.as_str())
        })
        .unwrap_or(0)
}

struct Received {
    digest: String,
    payload: Vec<u8>,
    at: Instant,
}

/// What this node received of the channel and has not seen taken.
#[derive(Default)]
struct Buffer {
    items: VecDeque<Received>,
    bytes: usize,
}

impl Buffer {
    /// Adds a message; returns how many of the oldest were dropped to stay in bounds.
    fn push(&mut self, payload: Vec<u8>, at: Instant) -> usize {
        self.bytes += payload.len();
        self.items.push_back(Received {
            digest: digest(&payload),
            payload,
            at,
        });
        let mut dropped = 0;
        while self.items.len() > BUFFER_MESSAGES || self.bytes > BUFFER_BYTES {
            self.pop();
            dropped += 1;
        }
        dropped
    }

    fn pop(&mut self) {
        if let Some(item) = self.items.pop_front() {
            self.bytes = self.bytes.saturating_sub(item.payload.len());
        }
    }

    /// Forgets what is older than [`KEPT_FOR`] (while another node holds the lease).
    fn expire(&mut self, now: Instant) {
        while self
            .items
            .front()
            .is_some_and(|i| now.duration_since(i.at) > KEPT_FOR)
        {
            self.pop();
        }
    }

    /// Drops what the last holder took (see [`already_taken`]); returns how many.
    fn skip_taken(&mut self, taken: &[String]) -> usize {
        let digests: Vec<&str> = self.items.iter().map(|i| i.digest.as_str()).collect();
        let n = already_taken(&digests, taken);
        for _ in 0..n {
            self.pop();
        }
        n
    }
}

pub struct ChannelInput {
    pub link: RedisLink,
    pub channel: String,
    pub keys: Keys,
    pub history: Option<HistoryConfig>,
    pub metrics: Arc<Metrics>,
    pub max_payload: usize,
    /// This node's lease holder name.
    pub holder: String,
    /// Replicas an append waits for (see `Config::replica_wait`).
    pub wait: Option<ReplicaWait>,
}

/// What became of the message at the buffer's front.
enum Took {
    /// Appended or refused, and recorded as taken: next.
    Done,
    /// The lease is another node's: it takes it.
    NotHolder,
    /// Redis did not answer: try again (after finding out whether it was taken).
    Retry,
}

impl ChannelInput {
    /// Receives the channel until `stop`, taking what arrives while this node holds the
    /// lease; then takes what it holds and gives the lease up.
    pub async fn run(self, stop: CancellationToken) {
        let Some(mut stream) = self.subscribe(&stop).await else {
            return;
        };
        let mut buffer = Buffer::default();
        let mut holding = false;
        // After a Redis error the message may have been taken: look before retrying.
        let mut unsure = false;
        let mut tick = tokio::time::interval(LEASE_RENEW);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                item = stream.next() => {
                    let Some((_, payload)) = item else { break };
                    let dropped = buffer.push(payload, Instant::now());
                    if holding && dropped > 0 {
                        tracing::warn!(dropped, "publish channel: this node is too far behind: oldest messages dropped");
                        for _ in 0..dropped {
                            self.metrics.publish(Source::redis, Outcome::buffer_full);
                        }
                    }
                }
                _ = tick.tick() => {
                    let now_holding = self.take_or_renew().await;
                    if now_holding && !holding {
                        tracing::info!(channel = %self.channel, "holding the publish channel: appending what backends publish");
                        unsure = true;
                    } else if holding && !now_holding {
                        tracing::info!(channel = %self.channel, "publish channel lease lost: another node appends");
                    }
                    holding = now_holding;
                    if !holding {
                        buffer.expire(Instant::now());
                    }
                }
            }
            if holding {
                if unsure {
                    match self.skip_taken(&mut buffer).await {
                        Ok(()) => unsure = false,
                        Err(e) => {
                            tracing::warn!(error = %e, "publish channel: where the last holder stopped is unknown: waiting");
                            continue;
                        }
                    }
                }
                match self.take_all(&mut buffer).await {
                    Took::Done => {}
                    Took::NotHolder => holding = false,
                    Took::Retry => unsure = true,
                }
            }
        }
        if holding && !unsure {
            let _ = self.take_all(&mut buffer).await;
        }
        let _ = self.link.unsubscribe(self.channel.clone()).await;
        if holding {
            let _ = RELEASE_SCRIPT
                .key(self.keys.channel_owner())
                .arg(&self.holder)
                .invoke_async::<i64>(&mut self.link.connection())
                .await;
        }
    }

    async fn subscribe(&self, stop: &CancellationToken) -> Option<MessageStream<ChanItem>> {
        loop {
            match self
                .link
                .subscribe(self.channel.clone(), CHANNEL_BUFFER)
                .await
            {
                Ok(stream) => return Some(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "could not subscribe to the publish channel")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(LEASE_RENEW) => {}
            }
        }
    }

    async fn take_or_renew(&self) -> bool {
        let lease_ms = u64::try_from(LEASE.as_millis()).unwrap_or(3_000);
        TAKE_OR_RENEW_SCRIPT
            .key(self.keys.channel_owner())
            .arg(&self.holder)
            .arg(lease_ms)
            .invoke_async::<i64>(&mut self.link.connection())
            .await
            .is_ok_and(|r| r == 1)
    }

    /// Drops from the buffer what was already taken, by this node before an error or by
    /// the holder before it.
    async fn skip_taken(&self, buffer: &mut Buffer) -> redis::RedisResult<()> {
        let taken: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.channel_taken())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.link.connection())
            .await?;
        let skipped = buffer.skip_taken(&taken);
        tracing::debug!(
            skipped,
            left = buffer.items.len(),
            "publish channel: resuming after what was taken"
        );
        Ok(())
    }

    /// Takes the buffered messages in order until it is empty or a take does not happen.
    async fn take_all(&self, buffer: &mut Buffer) -> Took {
        while let Some(front) = buffer.items.front() {
            match self.take(&front.digest, &front.payload).await {
                Took::Done => buffer.pop(),
                other => return other,
            }
        }
        Took::Done
    }

    /// Validates one channel message and appends it to the log (or records it refused).
    async fn take(&self, digest: &str, payload: &[u8]) -> Took {
        let lease = self.keys.channel_owner();
        let taken = self.keys.channel_taken();
        let fence = Fence {
            lease: &lease,
            holder: &self.holder,
            taken: &taken,
            digest,
        };
        // An API body within the limit may grow by the envelope's fields.
        let refused = if payload.len() > self.max_payload + ENVELOPE_OVERHEAD {
            tracing::warn!(
                bytes = payload.len(),
                "redis channel message over the payload limit: refused"
            );
            Outcome::too_large
        } else {
            match parse(payload, NAMESPACES) {
                Err(e) => {
                    tracing::warn!(error = %e, "invalid message on the redis channel: refused");
                    Outcome::invalid
                }
                Ok(message) => {
                    let wire = envelope(&message, message.origin_us.unwrap_or_else(now_us));
                    let appended = log::append(
                        &self.link,
                        &self.keys,
                        self.history.as_ref(),
                        &self.metrics,
                        &message,
                        &wire,
                        Some(fence),
                        self.wait,
                    )
                    .await;
                    return match appended {
                        Ok(_) => {
                            self.metrics.publish(Source::redis, Outcome::accepted);
                            Took::Done
                        }
                        Err(AppendError::NotHolder) => Took::NotHolder,
                        // On the primary (and recorded as taken): a failover now may lose
                        // it, a retry would repeat it. Counted, not retried.
                        Err(AppendError::NotReplicated { acked, wanted }) => {
                            tracing::warn!(
                                acked,
                                wanted,
                                "redis channel message not confirmed by enough replicas"
                            );
                            self.metrics.publish(Source::redis, Outcome::not_replicated);
                            Took::Done
                        }
                        Err(AppendError::Redis(e)) => {
                            tracing::warn!(error = %e, "redis channel message not appended yet: retrying");
                            Took::Retry
                        }
                    };
                }
            }
        };
        let recorded = TAKEN_SCRIPT
            .key(&lease)
            .key(&taken)
            .arg(&self.holder)
            .arg(digest)
            .arg(TAKEN_KEPT)
            .invoke_async::<i64>(&mut self.link.connection())
            .await;
        match recorded {
            Ok(1) => {
                self.metrics.publish(Source::redis, refused);
                Took::Done
            }
            Ok(_) => Took::NotHolder,
            Err(_) => Took::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(digests: &[&str]) -> Vec<String> {
        digests.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn a_new_holder_finds_where_the_last_one_stopped() {
        // (name, buffered, taken, how many of the buffered were taken)
        let cases: &[(&str, &[&str], &[&str], usize)] = &[
            ("nothing recorded", &["a", "b"], &[], 0),
            ("all taken", &["a", "b", "c"], &["a", "b", "c"], 3),
            ("some taken", &["a", "b", "c", "d"], &["x", "a", "b"], 2),
            (
                "the record reaches before the buffer's start",
                &["b", "c", "d"],
                &["x", "a", "b", "c"],
                2,
            ),
            (
                "the record is older than the buffer",
                &["c", "d"],
                &["a", "b"],
                0,
            ),
            (
                "repeats: the whole record decides",
                &["p", "p", "q", "p", "p", "r"],
                &["p", "p", "q", "p"],
                4,
            ),
            (
                "the latest place wins",
                &["a", "b", "a", "b", "c"],
                &["a", "b"],
                4,
            ),
        ];
        for (name, buffered, record, want) in cases {
            assert_eq!(
                already_taken(buffered, &taken(record)),
                *want,
                "case {name}"
            );
        }
    }

    #[test]
    fn the_buffer_is_bounded_and_digests_are_stable() {
        let mut buffer = Buffer::default();
        let now = Instant::now();
        let mut dropped = 0;
        for i in 0..(BUFFER_MESSAGES + 3) {
            dropped += buffer.push(i.to_string().into_bytes(), now);
        }
        assert_eq!(dropped, 3);
        assert_eq!(buffer.items.len(), BUFFER_MESSAGES);
        assert_eq!(
            buffer.push(vec![0; BUFFER_BYTES + 1], now),
            BUFFER_MESSAGES + 1,
            "a message over the byte bound is not kept"
        );
        assert!(buffer.items.is_empty() && buffer.bytes == 0);
        buffer.push(b"old".to_vec(), now);
        buffer.expire(now + KEPT_FOR + Duration::from_secs(1));
        assert!(buffer.items.is_empty(), "older than it keeps");
        assert_eq!(
            digest(b"hello"),
            "a430d84680aabd0b",
            "FNV-1a 64 of \"hello\""
        );
        assert_ne!(digest(b"a"), digest(b"b"));
    }
}
