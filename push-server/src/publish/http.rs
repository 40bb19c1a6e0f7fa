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

use super::{envelope, now_us, parse};
use crate::{
    metrics::{Outcome, Source},
    state::SharedState,
};

/// Namespaces a publish may address.
pub const NAMESPACES: &[&str] = &[push_contract::defaults::NAMESPACE];

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    reply(status, json!({ "error": message.to_string() }))
}

/// Constant-time-ish comparison: compares digests, so timing says nothing about the token.
fn token_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(expected.as_bytes())
}

pub async fn publish(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let metrics = &state.metrics;
    let count = |outcome| metrics.publish(Source::http, outcome);
    let Some(expected) = state.config.api_token.as_deref() else {
        count(Outcome::disabled);
        return error(
            StatusCode::NOT_FOUND,
            "publish API disabled: PUSH_API_TOKEN is not set",
        );
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token_matches(auth, expected) {
        count(Outcome::unauthorized);
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let limit = state.config.max_payload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        count(Outcome::too_large);
        return too_large();
    }
    let Ok(bytes) = to_bytes(body, limit).await else {
        count(Outcome::too_large);
        return too_large();
    };
    let message = match parse(&bytes, NAMESPACES) {
        Ok(message) => message,
        Err(e) => {
            count(Outcome::invalid);
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let Some(started) = state.started.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "starting");
    };
    let origin = now_us();
    let Some(link) = &started.link else {
        // Single node (no Redis): this node's sockets are every socket there is.
        let local = super::Message {
            origin_us: Some(origin),
            ..message
        };
        let delivered = started.delivery.deliver(&local).await;
        count(Outcome::accepted);
        return reply(
            StatusCode::ACCEPTED,
            json!({ "accepted": true, "fanout": "single-node", "delivered": delivered }),
        );
    };
    // The limit applies to what travels: every node drops a channel message over it, so
    // a body under the limit whose envelope is over it must not be answered 202.
    let wire = envelope(&message, origin);
    if wire.len() > limit {
        count(Outcome::too_large);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the message is {} bytes once wrapped for the cluster channel; at most {limit} are accepted",
                wire.len()
            ),
        );
    }
    // 202 means every node will deliver; without Redis that cannot be promised, so the
    // answer is an immediate 503 (not a local-only delivery, not an 8 s hang).
    if state.metrics.redis_up.get() == 0 {
        count(Outcome::redis_unavailable);
        return unavailable("redis is unreachable");
    }
    let mut connection = link.connection();
    let publish = connection.publish::<_, _, i64>(&state.config.redis_channel, wire);
    match tokio::time::timeout(state.config.redis_timeout, publish).await {
        Ok(Ok(_)) => {
            count(Outcome::accepted);
            reply(
                StatusCode::ACCEPTED,
                json!({ "accepted": true, "fanout": "cluster" }),
            )
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "redis publish failed: answered 503");
            count(Outcome::redis_unavailable);
            unavailable("redis refused the publish")
        }
        Err(_) => {
            tracing::warn!(timeout = ?state.config.redis_timeout, "redis publish timed out: answered 503");
            count(Outcome::redis_unavailable);
            unavailable("redis did not answer in time")
        }
    }
}

/// 503 + Retry-After: nothing was delivered, the caller should retry.
fn unavailable(why: &str) -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}: the message was not accepted (delivered nowhere); retry"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
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
