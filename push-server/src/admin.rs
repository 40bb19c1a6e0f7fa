//! The server port (`PUSH_ADMIN_LISTEN`): the publish, rebalance, disconnect and presence APIs
//! backends call, `/metrics`, `/healthz`, `/readyz`. Kept off the client port so exposing
//! clients never exposes the server API or the metrics (Centrifugo's internal port, for
//! the same reason).

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use push_contract::paths;

use crate::{disconnect, presence, publish, rebalance, state::SharedState};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route(paths::HEALTHZ, get(|| async { "ok\n" }))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
        .route(paths::PUBLISH, post(publish::http::publish))
        .route(paths::REBALANCE, post(rebalance::rebalance))
        .route(paths::DISCONNECT, post(disconnect::disconnect))
        .route(paths::ROOM_PRESENCE, get(presence::room_presence))
        .route(paths::USER_PRESENCE, get(presence::user_presence))
        .with_state(state)
}

async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    match state.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.as_str()),
        ),
    }
}

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    state.refresh_connection_gauge();
    // From the drain signal itself, as /readyz: the drain task sets it too, but only once
    // it has been scheduled (a scrape in between said "not draining" while /readyz said
    // draining).
    state.metrics.draining.set(i64::from(state.draining()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
