//! The handshake gate in front of socket.io: refuses new handshakes while draining (the
//! client then retries, through the load balancer, elsewhere) and beyond the node's
//! handshake rate (a reconnect storm is spread over seconds, not absorbed at once),
//! refuses the sessions a drain moved off, and maps session ids to the TCP connections
//! they use.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use push_contract::paths;

use crate::{conn::ConnHandle, request_head, state::SharedState};

/// axum middleware over the client port's router.
pub async fn handshake_gate(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.uri().path().starts_with(paths::SOCKET_IO) {
        match req.uri().query().and_then(engine_sid) {
            None if state.draining() || state.rebalancing() => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "1")],
                    "server is moving its clients off (draining or rebalancing): reconnect to another node\n",
                )
                    .into_response();
            }
            Some(sid) if state.conns.is_moved_off(sid) => {
                // Engine.IO's own answer for a gone session: the client reconnects.
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"code":1,"message":"Session ID unknown"}"#,
                )
                    .into_response();
            }
            Some(sid) => {
                if let Some(conn) = req.extensions().get::<ConnHandle>() {
                    state.conns.attach(sid, conn);
                }
            }
            None if !state.handshake_allowed() => {
                state.metrics.handshakes_refused.inc();
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "1")],
                    "too many new sessions on this node: retry in a second\n",
                )
                    .into_response();
            }
            None => {
                // A new session: its head is kept as long as the session lives.
                let (mut parts, body) = req.into_parts();
                request_head::detach(&mut parts);
                req = Request::from_parts(parts, body);
            }
        }
    }
    next.run(req).await
}

/// The Engine.IO session id of a request (`sid=` query parameter); none = a new handshake.
fn engine_sid(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
        .filter(|sid| !sid.is_empty())
}

#[cfg(test)]
mod tests {
    use super::engine_sid;

    #[test]
    fn engine_sid_is_found_in_the_query() {
        let cases = [
            ("handshake", "EIO=4&transport=polling", None),
            (
                "polling request",
                "EIO=4&transport=polling&sid=abc",
                Some("abc"),
            ),
            ("sid first", "sid=xyz&EIO=4", Some("xyz")),
            ("empty sid is a handshake", "EIO=4&sid=", None),
            ("lookalike key", "EIO=4&xsid=abc", None),
        ];
        for (name, query, want) in cases {
            assert_eq!(engine_sid(query), want, "case {name}");
        }
    }
}
