//! `POST /api/v1/disconnect` (server port, bearer token): end a user's sockets, or one
//! socket, on every node, each told why first — for a backend that bans a user, logs
//! one out or revokes a session. With Redis the order reaches every node over a pub/sub
//! channel of the cluster's own (`<prefix>:disconnect`) and the answer says how many
//! nodes took it; a single node ends its own sockets.
//!
//! A socket gets [`DISCONNECT_REASON`] `{"reason"}`, then socket.io's DISCONNECT: the
//! official client reports "io server disconnect" and does not reconnect by itself.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use push_contract::socket::{DISCONNECT_REASON, user_room};
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::Driver;
use tokio_util::sync::CancellationToken;

use crate::{
    adapter::NodeSockets,
    api_token::{refusal, refuse},
    metrics::Metrics,
    redis_link::RedisLink,
    state::SharedState,
};

/// The largest body taken (a user id, a socket id and a reason fit many times over).
pub const MAX_BODY_BYTES: usize = 4096;
/// The longest `reason` (characters): a sentence for the user, not a document.
pub const MAX_REASON_CHARS: usize = 200;
/// The longest user or socket id.
pub const MAX_ID_BYTES: usize = 256;
/// Orders waiting on one node: more at once are dropped (with a warning), not queued.
const CHANNEL_BUFFER: usize = 1024;

/// Whose sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// Every socket of the user (its `user:<id>` room), on every node.
    User(String),
    /// The one socket with this socket.io id, wherever it is.
    Sid(String),
}

/// What every node is asked to do (the request, checked; also the channel's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub target: Target,
    pub reason: String,
}

/// The request body: exactly one of `user` and `sid`, and a `reason`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    reason: String,
}

/// A request checked: the order, or why not.
pub fn check(body: &[u8]) -> Result<Order, String> {
    let request: Request =
        serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))?;
    let target = match (request.user, request.sid) {
        (Some(user), None) => Target::User(user),
        (None, Some(sid)) => Target::Sid(sid),
        _ => return Err("give exactly one of `user` and `sid`".into()),
    };
    let id = match &target {
        Target::User(id) | Target::Sid(id) => id,
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("the user or sid must be 1 to {MAX_ID_BYTES} bytes"));
    }
    let reason = request.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("reason must be 1 to {MAX_REASON_CHARS} characters"));
    }
    Ok(Order { target, reason })
}

pub async fn disconnect(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    if body.len() > MAX_BODY_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let order = match check(&body) {
        Ok(order) => order,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    match send(&state, &order).await {
        Ok(Sent::Cluster { nodes }) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": true, "nodes": nodes })),
        )
            .into_response(),
        Ok(Sent::SingleNode { sockets }) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": true, "nodes": 1, "sockets": sockets })),
        )
            .into_response(),
        Err(SendError::Starting) => refuse(StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Err(SendError::Redis(e)) => {
            let mut response = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("redis: {e}: the order reached no node; retry"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Where an order went.
pub enum Sent {
    /// Published: this many nodes took it.
    Cluster { nodes: i64 },
    /// No Redis: applied here, to this many sockets.
    SingleNode { sockets: usize },
}

pub enum SendError {
    Starting,
    Redis(String),
}

/// Gives the order to every node (the disconnect API, the Admin UI).
pub async fn send(state: &SharedState, order: &Order) -> Result<Sent, SendError> {
    let Some(started) = state.started.get() else {
        return Err(SendError::Starting);
    };
    let Some(link) = &started.link else {
        let sockets = apply(order, started.sockets.as_ref(), &state.metrics);
        return Ok(Sent::SingleNode { sockets });
    };
    let payload = serde_json::to_vec(order).map_err(|e| SendError::Redis(e.to_string()))?;
    // PUBLISH answers how many subscribers got it: every node subscribes once.
    redis::cmd("PUBLISH")
        .arg(state.keys.disconnect_channel())
        .arg(payload)
        .query_async(&mut link.connection())
        .await
        .map(|nodes| Sent::Cluster { nodes })
        .map_err(|e| SendError::Redis(e.to_string()))
}

/// Ends this node's sockets the order names; returns how many.
pub fn apply(order: &Order, sockets: &dyn NodeSockets, metrics: &Metrics) -> usize {
    let data = serde_json::json!({ "reason": order.reason });
    let ended = match &order.target {
        Target::User(user) => {
            sockets.disconnect(Some(&user_room(user)), &|_| true, DISCONNECT_REASON, &data)
        }
        Target::Sid(sid) => {
            sockets.disconnect(None, &|id| id == sid.as_str(), DISCONNECT_REASON, &data)
        }
    };
    if ended > 0 {
        tracing::info!(target = ?order.target, reason = %order.reason, sockets = ended, "disconnected by the API");
    }
    metrics.disconnected_by_api.inc_by(ended as u64);
    ended
}

/// Takes the cluster's orders until `stop`: subscribes (again after Redis was away; a
/// failover resubscribes by itself) and applies each to this node's sockets.
pub async fn listen(
    link: RedisLink,
    channel: String,
    sockets: Arc<dyn NodeSockets>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let Some(mut stream) = link.subscribed_until(&channel, CHANNEL_BUFFER, &stop).await else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            item = stream.next() => {
                let Some((_, payload)) = item else { break };
                match serde_json::from_slice::<Order>(&payload) {
                    Ok(order) => {
                        apply(&order, sockets.as_ref(), &metrics);
                    }
                    Err(e) => tracing::warn!(error = %e, "a disconnect order this node cannot read: ignored"),
                }
            }
        }
    }
    let _ = link.unsubscribe(channel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_one_target_and_a_short_reason() {
        let ok = |body: &str| check(body.as_bytes());
        assert_eq!(
            ok(r#"{"user": "ann", "reason": "banned"}"#),
            Ok(Order {
                target: Target::User("ann".into()),
                reason: "banned".into()
            })
        );
        assert_eq!(
            ok(r#"{"sid": "abc", "reason": " logged out "}"#),
            Ok(Order {
                target: Target::Sid("abc".into()),
                reason: "logged out".into()
            })
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let refused: &[(&str, String)] = &[
            (
                "both targets",
                r#"{"user": "a", "sid": "b", "reason": "r"}"#.into(),
            ),
            ("no target", r#"{"reason": "r"}"#.into()),
            ("empty user", r#"{"user": "", "reason": "r"}"#.into()),
            ("no reason", r#"{"user": "a"}"#.into()),
            ("blank reason", r#"{"user": "a", "reason": "  "}"#.into()),
            (
                "long reason",
                format!(r#"{{"user": "a", "reason": "{long}"}}"#),
            ),
            (
                "unknown field",
                r#"{"user": "a", "reason": "r", "room": "x"}"#.into(),
            ),
            ("not JSON", "user=a".into()),
        ];
        for (case, body) in refused {
            assert!(ok(body).is_err(), "{case}: {body}");
        }
    }

    #[test]
    fn orders_travel_as_json_and_back() {
        let order = Order {
            target: Target::User("ann".into()),
            reason: "banned".into(),
        };
        let wire = serde_json::to_vec(&order).expect("serializes");
        assert_eq!(
            serde_json::from_slice::<Order>(&wire).expect("parses"),
            order
        );
    }
}
