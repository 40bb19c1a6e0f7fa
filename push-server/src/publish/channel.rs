//! The Redis publish channel: every node subscribes and delivers to its own sockets.

use std::sync::Arc;

use futures::StreamExt;
use socketioxide_redis::drivers::Driver;
use tokio_util::sync::CancellationToken;

use super::{ENVELOPE_OVERHEAD, deliver::NodeDelivery, http::NAMESPACES, parse};
use crate::{
    metrics::{Metrics, Outcome, Source},
    redis_link::RedisLink,
};

/// Buffer between the Redis connection and delivery; beyond it messages are dropped
/// (and counted) rather than stalling the shared connection.
const CHANNEL_BUFFER: usize = 8192;

/// Subscribes to `channel` and delivers what arrives until `stop` fires.
pub async fn subscribe(
    link: &RedisLink,
    channel: &str,
    delivery: Arc<dyn NodeDelivery>,
    metrics: Arc<Metrics>,
    max_payload: usize,
    stop: CancellationToken,
) -> Result<(), redis::RedisError> {
    let mut stream = link.subscribe(channel.to_owned(), CHANNEL_BUFFER).await?;
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => item,
            };
            let Some((_, payload)) = item else { return };
            // An API body within the limit may grow by the envelope's fields.
            if payload.len() > max_payload + ENVELOPE_OVERHEAD {
                metrics.publish(Source::redis, Outcome::too_large);
                tracing::warn!(
                    bytes = payload.len(),
                    "redis channel message over the payload limit: dropped"
                );
                continue;
            }
            match parse(&payload, NAMESPACES) {
                Ok(message) => {
                    delivery.deliver(&message).await;
                    metrics.publish(Source::redis, Outcome::accepted);
                }
                Err(e) => {
                    metrics.publish(Source::redis, Outcome::invalid);
                    tracing::warn!(error = %e, "invalid message on the redis channel: dropped");
                }
            }
        }
    });
    Ok(())
}
