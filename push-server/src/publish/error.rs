//! Why `POST /api/v1/publish` refused a message: one enum, rendered as its status and a
//! `{"error": "..."}` body; the metrics outcome it counts as.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use push_contract::env;
use serde_json::json;

use super::InvalidMessage;
use crate::metrics::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish API disabled: {} is not set", env::API_TOKEN)]
    Disabled,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Every node drops a channel message over the limit, so the wrapped size counts.
    #[error(
        "the message is {size} bytes once wrapped for the cluster channel; at most {limit} are accepted"
    )]
    WrappedTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
    #[error("starting")]
    Starting,
    /// Redis did not take it: delivered nowhere, the caller should retry.
    #[error("{0}: the message was not accepted (delivered nowhere); retry")]
    RedisUnavailable(&'static str),
    /// On the primary but not confirmed on a replica in time: a failover could lose it,
    /// or it may be delivered; a retry with the same `Idempotency-Key` is delivered once.
    #[error(
        "the message reached the Redis primary but only {acked} of {wanted} replicas confirmed it in time: not confirmed (it may still be delivered once); retry with the same Idempotency-Key"
    )]
    NotReplicated { acked: u32, wanted: u32 },
    #[error("header Idempotency-Key: {0}")]
    BadIdempotencyKey(&'static str),
}

impl PublishError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Disabled => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge { .. } | Self::WrappedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) | Self::BadIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            Self::Starting | Self::RedisUnavailable(_) | Self::NotReplicated { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `result` label it counts under; `None` = not counted (the node is starting).
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Disabled => Some(Outcome::disabled),
            Self::Unauthorized => Some(Outcome::unauthorized),
            Self::TooLarge { .. } | Self::WrappedTooLarge { .. } => Some(Outcome::too_large),
            Self::Invalid(_) | Self::BadIdempotencyKey(_) => Some(Outcome::invalid),
            Self::Starting => None,
            Self::RedisUnavailable(_) => Some(Outcome::redis_unavailable),
            Self::NotReplicated { .. } => Some(Outcome::not_replicated),
        }
    }
}

impl IntoResponse for PublishError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if let Self::RedisUnavailable(_) | Self::NotReplicated { .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[tokio::test]
    async fn each_refusal_renders_its_status_body_and_retry_after() {
        let cases = [
            (
                "disabled",
                PublishError::Disabled,
                404,
                None,
                "publish API disabled: PUSH_API_TOKEN is not set",
            ),
            (
                "wrapped too large",
                PublishError::WrappedTooLarge {
                    size: 12,
                    limit: 10,
                },
                413,
                None,
                "the message is 12 bytes once wrapped for the cluster channel; at most 10 are accepted",
            ),
            (
                "invalid",
                InvalidMessage::Target.into(),
                400,
                None,
                "exactly one of `room`, `user` or `broadcast: true` must be given",
            ),
            ("starting", PublishError::Starting, 503, None, "starting"),
            (
                "redis down",
                PublishError::RedisUnavailable("redis is unreachable"),
                503,
                Some("1"),
                "redis is unreachable: the message was not accepted (delivered nowhere); retry",
            ),
            (
                "not on a replica",
                PublishError::NotReplicated {
                    acked: 0,
                    wanted: 1,
                },
                503,
                Some("1"),
                "the message reached the Redis primary but only 0 of 1 replicas confirmed it in time: not confirmed (it may still be delivered once); retry with the same Idempotency-Key",
            ),
            (
                "bad idempotency key",
                PublishError::BadIdempotencyKey("not visible ASCII"),
                400,
                None,
                "header Idempotency-Key: not visible ASCII",
            ),
        ];
        for (name, error, status, retry_after, message) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "case {name}");
            let retry = response.headers().get(header::RETRY_AFTER);
            assert_eq!(
                retry.and_then(|v| v.to_str().ok()),
                retry_after,
                "case {name}"
            );
            let body = to_bytes(response.into_body(), 4096).await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(body, json!({ "error": message }), "case {name}");
        }
    }
}
