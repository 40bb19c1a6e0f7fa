//! The Redis publish channel backends may PUBLISH to. One node at a time (the holder
//! of a short lease in Redis) subscribes and appends what arrives to the fan-out log,
//! so each message gets one offset and is delivered once by every node. PUBLISH
//! answers 1 while a node holds the lease, 0 when none does (nothing was taken).

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use futures::StreamExt;
use redis::Script;
use socketioxide_redis::drivers::Driver;
use tokio_util::sync::CancellationToken;

use super::{ENVELOPE_OVERHEAD, NAMESPACES, envelope, log, now_us, parse};
use crate::{
    history::{HistoryConfig, Keys},
    metrics::{Metrics, Outcome, Source},
    redis_link::RedisLink,
};

/// Buffer between the Redis connection and the appender; beyond it messages are dropped
/// (and counted) rather than stalling the shared connection.
const CHANNEL_BUFFER: usize = 8192;
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
/// Hashed once: the lease is renewed every second.
static TAKE_OR_RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_OR_RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

pub struct ChannelInput {
    pub link: RedisLink,
    pub channel: String,
    pub keys: Keys,
    pub history: Option<HistoryConfig>,
    pub metrics: Arc<Metrics>,
    pub max_payload: usize,
    /// This node's lease holder name.
    pub holder: String,
}

impl ChannelInput {
    /// Holds (or waits for) the lease until `stop`, consuming the channel while it does.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let lease_ms = u64::try_from(LEASE.as_millis()).unwrap_or(3_000);
        let mut consuming: Option<CancellationToken> = None;
        loop {
            let owned = TAKE_OR_RENEW_SCRIPT
                .key(this.keys.channel_owner())
                .arg(&this.holder)
                .arg(lease_ms)
                .invoke_async::<i64>(&mut this.link.connection())
                .await
                .is_ok_and(|r| r == 1);
            match (owned, &consuming) {
                (true, None) => match this
                    .link
                    .subscribe(this.channel.clone(), CHANNEL_BUFFER)
                    .await
                {
                    Ok(stream) => {
                        tracing::info!(channel = %this.channel, "holding the publish channel: appending what backends publish");
                        let token = stop.child_token();
                        tokio::spawn(this.clone().consume(stream, token.clone()));
                        consuming = Some(token);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not subscribe to the publish channel")
                    }
                },
                (false, Some(token)) => {
                    tracing::info!(channel = %this.channel, "publish channel lease lost: another node appends");
                    token.cancel();
                    consuming = None;
                    let _ = this.link.unsubscribe(this.channel.clone()).await;
                }
                _ => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(LEASE_RENEW) => {}
            }
        }
        if consuming.is_some() {
            let _ = this.link.unsubscribe(this.channel.clone()).await;
            let _ = RELEASE_SCRIPT
                .key(this.keys.channel_owner())
                .arg(&this.holder)
                .invoke_async::<i64>(&mut this.link.connection())
                .await;
        }
    }

    async fn consume(
        self: Arc<Self>,
        mut stream: socketioxide_redis::drivers::MessageStream<
            socketioxide_redis::drivers::ChanItem,
        >,
        stop: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => item,
            };
            let Some((_, payload)) = item else { return };
            let outcome = self.take(&payload).await;
            self.metrics.publish(Source::redis, outcome);
        }
    }

    /// Validates one channel message and appends it to the log.
    async fn take(&self, payload: &[u8]) -> Outcome {
        // An API body within the limit may grow by the envelope's fields.
        if payload.len() > self.max_payload + ENVELOPE_OVERHEAD {
            tracing::warn!(
                bytes = payload.len(),
                "redis channel message over the payload limit: dropped"
            );
            return Outcome::too_large;
        }
        let message = match parse(payload, NAMESPACES) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "invalid message on the redis channel: dropped");
                return Outcome::invalid;
            }
        };
        let wire = envelope(&message, message.origin_us.unwrap_or_else(now_us));
        match log::append(
            &self.link,
            &self.keys,
            self.history.as_ref(),
            &self.metrics,
            &message,
            &wire,
        )
        .await
        {
            Ok(_) => Outcome::accepted,
            Err(e) => {
                tracing::warn!(error = %e, "redis channel message not appended: dropped");
                Outcome::redis_unavailable
            }
        }
    }
}
