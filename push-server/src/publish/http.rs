//! `POST /api/v1/publish`: bearer token, size limit, validation, then onto the Redis
//! channel (cluster fan-out) or, without a working Redis, straight to local sockets.

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
    if let Some(link) = &started.link {
        let wire = envelope(&message, origin);
        let published: Result<i64, _> = link
            .connection()
            .publish(&state.config.redis_channel, wire)
            .await;
        match published {
            Ok(_) => {
                count(Outcome::accepted);
                return reply(
                    StatusCode::ACCEPTED,
                    json!({ "accepted": true, "fanout": "cluster" }),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis publish failed: delivering on this node only")
            }
        }
    }
    let local = super::Message {
        origin_us: Some(origin),
        ..message
    };
    let delivered = started.delivery.deliver(&local).await;
    let (outcome, fanout) = if started.link.is_some() {
        (Outcome::local_only, "local-only: redis down")
    } else {
        (Outcome::accepted, "single-node")
    };
    count(outcome);
    reply(
        StatusCode::ACCEPTED,
        json!({ "accepted": true, "fanout": fanout, "delivered": delivered }),
    )
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
