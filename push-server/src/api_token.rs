//! The server API's bearer token (`PUSH_API_TOKEN`): the one check every route a backend
//! calls makes (publish answers it in its own error shape, rebalance and disconnect here).

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// Constant-time-ish comparison: compares digests, so timing says nothing about the token.
pub fn token_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// A refusal: `status` with `{"error": message}`.
pub fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The answer to a request without the token (404 while the API is off: no token
/// configured; 401 for a missing or wrong one); `None` when it carries it.
pub fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = state.config.api_token.as_deref() else {
        return Some(refuse(
            StatusCode::NOT_FOUND,
            "the server API is disabled (no token)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (!token_matches(given, expected))
        .then(|| refuse(StatusCode::UNAUTHORIZED, "bad or missing bearer token"))
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
