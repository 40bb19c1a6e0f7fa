//! `POST /api/v1/publish`: bearer token, size limit, validation, then appended to the
//! cluster's fan-out log (every node delivers it; with history on, kept for reconnecting
//! clients) and answered with its offset; without Redis configured, straight to this
//! single node's sockets; with Redis unreachable, 503 + Retry-After at once.

use axum::{
    Json,
    body::{Body, to_bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    ENVELOPE_OVERHEAD, Message, NAMESPACES, envelope, error::PublishError, log, now_us, parse,
};
use crate::{
    api_token::token_matches,
    history::{Offset, script::AppendError},
    metrics::{Outcome, Source},
    redis_link::RedisLink,
    state::{AppState, SharedState},
};

/// The header a publisher names a message it may send again with: a retry with the same
/// key (within the history TTL) is delivered once and answered with the first offset.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A publish the node took (202).
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// In the fan-out log at `offset`: every node delivers it to its own sockets.
    Cluster { offset: Offset },
    /// No Redis configured: written to this node's sockets, the only ones there are.
    SingleNode { delivered: usize },
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let body = match self {
            Self::Cluster { offset } => {
                json!({ "accepted": true, "fanout": "cluster", "offset": offset.to_string() })
            }
            Self::SingleNode { delivered } => {
                json!({ "accepted": true, "fanout": "single-node", "delivered": delivered })
            }
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

/// The handler: [`accept`], counted by outcome.
pub async fn publish(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Accepted, PublishError> {
    let result = accept(&state, &headers, body).await;
    let outcome = match &result {
        Ok(_) => Some(Outcome::accepted),
        Err(e) => e.outcome(),
    };
    if let Some(outcome) = outcome {
        state.metrics.publish(Source::http, outcome);
    }
    result
}

/// Bearer token, size limit, validation, then onto the Redis channel (or, without
/// Redis configured, to this node's sockets).
async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, PublishError> {
    let expected = state
        .config
        .api_token
        .as_deref()
        .ok_or(PublishError::Disabled)?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token_matches(auth, expected) {
        return Err(PublishError::Unauthorized);
    }
    let limit = state.config.max_payload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(PublishError::TooLarge { limit });
    }
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| PublishError::TooLarge { limit })?;
    let mut message = parse(&bytes, NAMESPACES)?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key
            .to_str()
            .ok()
            .filter(|k| super::valid_idempotency_key(k))
            .ok_or(PublishError::BadIdempotencyKey(
                "1 to 200 visible ASCII characters",
            ))?;
        message.idempotency_key = Some(key.to_owned());
    }
    hand_over(state, message).await
}

/// A validated message handed to the cluster (every node delivers it; with history on,
/// kept for reconnecting clients), or without Redis written to this node's sockets: the
/// one way in for the publish API and a client's `publish` event.
pub async fn hand_over(state: &AppState, message: Message) -> Result<Accepted, PublishError> {
    let limit = state.config.max_payload_bytes;
    let started = state.started.get().ok_or(PublishError::Starting)?;
    let origin = now_us();
    let Some(link) = &started.link else {
        let message = Message {
            origin_us: Some(origin),
            ..message
        };
        let delivered = started.delivery.deliver(&message, None).await;
        return Ok(Accepted::SingleNode { delivered });
    };
    let wire = envelope(&message, origin);
    // The body was within the limit and `data` travels as received, so this holds but
    // for a namespace or stamp longer than the overhead allows: then refuse, not drop.
    if wire.len() > limit + ENVELOPE_OVERHEAD {
        return Err(PublishError::WrappedTooLarge {
            size: wire.len(),
            limit: limit + ENVELOPE_OVERHEAD,
        });
    }
    // 202 means every node will deliver; without Redis that cannot be promised, so the
    // answer is an immediate 503 (not a delivery to this node only, not an 8 s hang).
    if state.metrics.redis_up.get() == 0 {
        return Err(PublishError::RedisUnavailable("redis is unreachable"));
    }
    hand_to_redis(link, state, &message, &wire).await
}

/// Appends to the fan-out log, waiting at most the configured Redis timeout.
async fn hand_to_redis(
    link: &RedisLink,
    state: &AppState,
    message: &Message,
    wire: &[u8],
) -> Result<Accepted, PublishError> {
    let wait = state.config.replica_wait();
    let append = log::append(
        link,
        &state.keys,
        state.config.history.as_ref(),
        &state.metrics,
        message,
        wire,
        None,
        wait,
    );
    // Redis's answer within the timeout, and the replicas' within as much again.
    let timeout = state.config.redis_timeout * if wait.is_some() { 2 } else { 1 };
    match tokio::time::timeout(timeout, append).await {
        Ok(Ok(offset)) => Ok(Accepted::Cluster { offset }),
        Ok(Err(AppendError::NotReplicated { acked, wanted })) => {
            tracing::warn!(
                acked,
                wanted,
                "publish not confirmed by enough replicas: answered 503"
            );
            Err(PublishError::NotReplicated { acked, wanted })
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "redis append failed: answered 503");
            Err(PublishError::RedisUnavailable("redis refused the publish"))
        }
        Err(_) => {
            // Dropped unanswered: the script either ran whole or not at all, but the
            // message may still be delivered. 503 says "not confirmed", not "lost".
            tracing::warn!(timeout = ?state.config.redis_timeout, "redis append timed out: answered 503");
            Err(PublishError::RedisUnavailable(
                "redis did not answer in time",
            ))
        }
    }
}
