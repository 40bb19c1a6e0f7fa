//! `POST /api/v1/publish`: bearer token, size limit, validation, then onto the Redis
//! channel (cluster fan-out); without Redis configured, straight to this single node's
//! sockets; with Redis unreachable, 503 + Retry-After at once.

use axum::{
    Json,
    body::{Body, to_bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use redis::AsyncCommands;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ENVELOPE_OVERHEAD, Message, envelope, error::PublishError, now_us, parse};
use crate::{
    metrics::{Outcome, Source},
    redis_link::RedisLink,
    state::{AppState, SharedState},
};

/// Namespaces a publish may address.
pub const NAMESPACES: &[&str] = &[push_contract::defaults::NAMESPACE];

/// A publish the node took (202).
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Onto the Redis channel: every node delivers to its own sockets.
    Cluster,
    /// No Redis configured: written to this node's sockets, the only ones there are.
    SingleNode { delivered: usize },
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let body = match self {
            Self::Cluster => json!({ "accepted": true, "fanout": "cluster" }),
            Self::SingleNode { delivered } => {
                json!({ "accepted": true, "fanout": "single-node", "delivered": delivered })
            }
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

/// Constant-time-ish comparison: compares digests, so timing says nothing about the token.
fn token_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(expected.as_bytes())
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
    let message = parse(&bytes, NAMESPACES)?;
    let started = state.started.get().ok_or(PublishError::Starting)?;
    let origin = now_us();
    let Some(link) = &started.link else {
        let message = Message {
            origin_us: Some(origin),
            ..message
        };
        let delivered = started.delivery.deliver(&message).await;
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
    hand_to_redis(link, state, wire).await
}

/// PUBLISHes onto the cluster channel, waiting at most the configured Redis timeout.
async fn hand_to_redis(
    link: &RedisLink,
    state: &AppState,
    wire: Vec<u8>,
) -> Result<Accepted, PublishError> {
    let mut connection = link.connection();
    let publish = connection.publish::<_, _, i64>(&state.config.redis_channel, wire);
    match tokio::time::timeout(state.config.redis_timeout, publish).await {
        Ok(Ok(_)) => Ok(Accepted::Cluster),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "redis publish failed: answered 503");
            Err(PublishError::RedisUnavailable("redis refused the publish"))
        }
        Err(_) => {
            tracing::warn!(timeout = ?state.config.redis_timeout, "redis publish timed out: answered 503");
            Err(PublishError::RedisUnavailable(
                "redis did not answer in time",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_checked() {
        let cases = [
            ("right", Some("Bearer t0k"), true),
            ("wrong", Some("Bearer nope"), false),
            ("no scheme", Some("t0k"), false),
            ("basic scheme", Some("Basic t0k"), false),
            ("missing", None, false),
        ];
        for (name, header, want) in cases {
            assert_eq!(token_matches(header, "t0k"), want, "case {name}");
        }
    }
}
