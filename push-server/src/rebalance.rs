//! `POST /api/v1/rebalance` (server port, bearer token): move some of this node's
//! clients to the other nodes, the way a drain moves all of them, without stopping.
//! Asked by the operator (or local mode's supervisor) after a scale-out, when this node
//! holds more than its share: the new nodes would otherwise sit idle until clients churn.
//!
//! The node says not-ready and refuses handshakes from the start, waits the drain's
//! settle time (the Service, or local mode's nginx, stops sending new clients here),
//! then cuts the chosen sessions in evenly spaced batches over the window. Each moved
//! client reconnects elsewhere and recovers what it missed (connection state recovery);
//! the node is ready again when the window ends.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::{
    api_token::{refusal, refuse},
    state::SharedState,
};

/// The longest window a request may ask for.
pub const MAX_WINDOW_SECONDS: u64 = 600;

/// The request body.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// How many of this node's clients to move (fewer when it has fewer).
    pub connections: usize,
    /// Over how long to spread them, after the settle time (1 to [`MAX_WINDOW_SECONDS`]).
    pub window_seconds: u64,
    /// How long new clients take to stop arriving once the node says not-ready (on
    /// Kubernetes: its readiness probe's period times its failure threshold); default
    /// the drain's settle time, at most [`MAX_SETTLE_MS`].
    #[serde(default)]
    pub settle_ms: Option<u64>,
}

/// The longest settle time a request may ask for.
pub const MAX_SETTLE_MS: u64 = 60_000;

/// The 202's body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// How many will be moved (at most the clients the node has after the settle time).
    pub connections: usize,
    pub settle_ms: u64,
    pub window_seconds: u64,
}

/// A request checked: `Ok` or the answer to give.
pub fn check(body: &[u8]) -> Result<Request, String> {
    let request: Request =
        serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))?;
    if request.connections == 0 {
        return Err("connections must be at least 1".into());
    }
    if !(1..=MAX_WINDOW_SECONDS).contains(&request.window_seconds) {
        return Err(format!(
            "windowSeconds must be between 1 and {MAX_WINDOW_SECONDS}"
        ));
    }
    if request.settle_ms.is_some_and(|ms| ms > MAX_SETTLE_MS) {
        return Err(format!("settleMs must be at most {MAX_SETTLE_MS}"));
    }
    Ok(request)
}

pub async fn rebalance(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let request = match check(&body) {
        Ok(request) => request,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    let Some(started) = state.started.get() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "starting");
    };
    if state.draining() {
        return refuse(
            StatusCode::CONFLICT,
            "draining: every client is moving off already",
        );
    }
    // One at a time: the gauge is the flag, so /readyz and /metrics say it too.
    if state.metrics.rebalancing.get() == 1 {
        return refuse(StatusCode::CONFLICT, "a rebalance is running");
    }
    state.metrics.rebalancing.set(1);
    let sockets = started.sockets.clone();
    let live = |sockets: &dyn crate::adapter::NodeSockets| -> Vec<String> {
        sockets
            .ids()
            .into_iter()
            .filter(|id| !state.conns.is_moved_off(id))
            .collect()
    };
    let connections = request.connections.min(live(sockets.as_ref()).len());
    let window = Duration::from_secs(request.window_seconds);
    let settle = request
        .settle_ms
        .map_or(state.config.drain_settle, Duration::from_millis);
    tracing::info!(
        connections,
        ?settle,
        ?window,
        "rebalance: moving clients to the other nodes"
    );
    let task_state = state.clone();
    tokio::spawn(async move {
        let abort = &task_state.shutdown.abort;
        tokio::select! {
            _ = abort.cancelled() => {}
            _ = tokio::time::sleep(settle) => {}
        }
        // Chosen after the settle time (sessions that ended meanwhile are not counted),
        // never one moved off before (it lingers until its heartbeat times out).
        let ids: Vec<String> = sockets
            .ids()
            .into_iter()
            .filter(|id| !task_state.conns.is_moved_off(id))
            .take(connections)
            .collect();
        let moved = ids.len();
        crate::drain::run(ids, window, abort, |sid| {
            task_state.conns.cut(sid);
            task_state.metrics.rebalanced.inc();
        })
        .await;
        task_state.metrics.rebalancing.set(0);
        tracing::info!(moved, "rebalance done");
    });
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            connections,
            settle_ms: u64::try_from(settle.as_millis()).unwrap_or(u64::MAX),
            window_seconds: request.window_seconds,
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert_eq!(
            check(br#"{"connections": 5, "windowSeconds": 10}"#),
            Ok(Request {
                connections: 5,
                window_seconds: 10,
                settle_ms: None,
            })
        );
        for (body, says) in [
            (
                &br#"{"connections": 0, "windowSeconds": 10}"#[..],
                "at least 1",
            ),
            (
                br#"{"connections": 5, "windowSeconds": 0}"#,
                "between 1 and 600",
            ),
            (
                br#"{"connections": 5, "windowSeconds": 601}"#,
                "between 1 and 600",
            ),
            (
                br#"{"connections": 5, "windowSeconds": 1, "settleMs": 60001}"#,
                "at most 60000",
            ),
            (br#"{"connections": 5}"#, "invalid body"),
            (
                br#"{"connections": 5, "windowSeconds": 1, "x": 1}"#,
                "invalid body",
            ),
            (
                br#"{"connections": -1, "windowSeconds": 1}"#,
                "invalid body",
            ),
            (b"not json", "invalid body"),
        ] {
            let got = check(body).expect_err("refused");
            assert!(got.contains(says), "{got}");
        }
    }
}
