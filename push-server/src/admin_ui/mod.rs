//! The official socket.io Admin UI (`@socket.io/admin-ui`) against the whole cluster: with
//! `PUSH_ADMIN_UI_PASSWORD` the client port has the namespace `/admin` (the UI's
//! username and password checked at CONNECT, "invalid credentials" otherwise), and, when
//! the UI's prebuilt files are found, the web app itself at `/admin-ui/`.
//!
//! An admin socket gets `config`, then every [`REFRESH`]: a `server_stats` per node and
//! one `all_sockets` with every node's sockets (at most [`MAX_SOCKETS_PER_NODE`] each),
//! gathered from the cluster like presence (`cluster_ask`, within [`DEADLINE`]). The UI
//! replaces its list with each `all_sockets`, so it follows connects, joins and leaves on
//! every pod without a per-event stream through Redis. Read-only by default: `config`
//! offers no action; with `PUSH_ADMIN_UI_READONLY=false` it offers disconnecting a socket
//! (the disconnect API's order) and making a socket join or leave a room (within its
//! token's rooms, as its own `subscribe` would), on whichever pod holds it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::Path as UrlPath,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use push_contract::paths;
use push_contract::socket::{ADMIN_NAMESPACE, MAX_ADMINS_PER_NODE};
use serde::{Deserialize, Serialize};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
};
use tokio_util::sync::CancellationToken;

pub mod settings;

use settings::AdminAuth;
pub use settings::AdminUi;

use crate::{
    adapter::{NodeSockets, ServingAdapter},
    disconnect::{self, Order, Target},
    redis_link::RedisLink,
    state::SharedState,
};

/// How often an admin socket gets the cluster's stats and sockets.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long the gathering waits for the other nodes.
pub const DEADLINE: Duration = Duration::from_secs(1);
/// Sockets one node shows at most (the UI is a browser page, not a bulk export).
pub const MAX_SOCKETS_PER_NODE: usize = 500;

static ADMINS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, thiserror::Error)]
enum AdminRefusal {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many admin connections on this node")]
    TooMany,
}

/// Registers `/admin` when the Admin UI is configured.
pub async fn register<A: ServingAdapter>(
    io: &SocketIo<A>,
    state: &SharedState,
) -> Result<(), String> {
    if state.config.admin_ui.is_none() {
        return Ok(());
    }
    A::add_namespace(io, ADMIN_NAMESPACE, on_connect::<A>.with(authenticate)).await
}

async fn authenticate(
    State(state): State<SharedState>,
    TryData(auth): TryData<AdminAuth>,
) -> Result<(), AdminRefusal> {
    let Some(admin) = &state.config.admin_ui else {
        return Err(AdminRefusal::InvalidCredentials);
    };
    if !admin.admits(&auth.unwrap_or_default()) {
        tracing::info!("admin UI: invalid credentials");
        return Err(AdminRefusal::InvalidCredentials);
    }
    if ADMINS.load(Ordering::Acquire) >= MAX_ADMINS_PER_NODE {
        return Err(AdminRefusal::TooMany);
    }
    Ok(())
}

/// What the UI is told it may do.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    supported_features: Vec<&'static str>,
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<SharedState>) {
    // The middleware's look refuses most; taking the slot here closes the race of
    // admins authenticating at once (then the connection ends at once).
    let took = ADMINS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < MAX_ADMINS_PER_NODE).then_some(n + 1)
    });
    if took.is_err() {
        tracing::info!(sid = %socket.id, "admin UI: too many admin connections on this node");
        let _ = socket.disconnect();
        return;
    }
    let readonly = state.config.admin_ui.as_ref().is_none_or(|a| a.readonly);
    // No AGGREGATED_EVENTS: the UI then shows its sockets, rooms and clients pages.
    let supported_features = if readonly {
        vec![]
    } else {
        vec!["DISCONNECT", "JOIN", "LEAVE"]
    };
    let _ = socket.emit("config", &Config { supported_features });
    if !readonly {
        socket.on("_disconnect", on_disconnect_request);
        socket.on("join", |args, state| on_room_request(args, state, true));
        socket.on("leave", |args, state| on_room_request(args, state, false));
    }
    // Given back on disconnect, not when the feed next notices: a slot freed is free now.
    socket.on_disconnect(|| async {
        ADMINS.fetch_sub(1, Ordering::AcqRel);
    });
    tracing::info!(sid = %socket.id, readonly, "admin UI connected");
    tokio::spawn(feed(socket, state));
}

/// `_disconnect` `(nsp, close, id)`: the socket `id`, on whichever node holds it.
async fn on_disconnect_request(
    TryData(args): TryData<(String, bool, String)>,
    State(state): State<SharedState>,
) {
    let Ok((_nsp, _close, sid)) = args else {
        tracing::info!("admin UI: a disconnect request without (nsp, close, id): ignored");
        return;
    };
    if sid.is_empty() || sid.len() > disconnect::MAX_ID_BYTES {
        return;
    }
    let order = Order {
        target: Target::Sid(sid),
        reason: "disconnected by an administrator".into(),
    };
    if disconnect::send(&state, &order).await.is_err() {
        tracing::warn!("admin UI: a disconnect order reached no node");
    }
}

/// `join` / `leave` `(nsp, room, id)`: the socket `id` joins or leaves `room` on whichever
/// node holds it, within its token's rooms (as its own `subscribe` would).
async fn on_room_request(
    TryData(args): TryData<(String, String, String)>,
    State(state): State<SharedState>,
    join: bool,
) {
    let Ok((_nsp, room, sid)) = args else {
        tracing::info!("admin UI: a room request without (nsp, room, id): ignored");
        return;
    };
    if room.is_empty()
        || room.len() > crate::auth::identity::MAX_ROOM_LEN
        || sid.len() > disconnect::MAX_ID_BYTES
    {
        return;
    }
    let Some(started) = state.started.get() else {
        return;
    };
    let Some(link) = &started.link else {
        if let Some(change) = (started.room_change)(&sid, room, join) {
            change.await;
        }
        return;
    };
    let Ok(order) = serde_json::to_vec(&Message::Room { sid, room, join }) else {
        return;
    };
    let sent: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(state.keys.admin_ui_channel())
        .arg(order)
        .query_async(&mut link.connection())
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "admin UI: a room order reached no node");
    }
}

/// Stats and sockets of the whole cluster, every [`REFRESH`], until the admin leaves.
async fn feed<A: Adapter>(socket: SocketRef<A>, state: SharedState) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while socket.connected() {
        tick.tick().await;
        let views = gather(&state).await;
        let mut sockets = Vec::new();
        for view in views {
            let _ = socket.emit("server_stats", &view.stats);
            sockets.extend(view.sockets);
        }
        if socket.emit("all_sockets", &sockets).is_err() {
            break;
        }
    }
}

/// One node's view (also the cluster question's answer).
#[derive(Debug, Serialize, Deserialize)]
struct NodeView {
    stats: ServerStats,
    sockets: Vec<serde_json::Value>,
}

/// `@socket.io/admin-ui`'s ServerStats.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerStats {
    server_id: String,
    hostname: String,
    pid: u32,
    uptime: f64,
    clients_count: usize,
    polling_clients_count: usize,
    namespaces: Vec<NamespaceDetails>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceDetails {
    name: String,
    sockets_count: usize,
}

/// What goes over the cluster's Admin UI channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Message {
    /// Every node answers its view on `reply`.
    Snapshot { reply: String },
    /// The node holding `sid` makes it join or leave `room`.
    Room {
        sid: String,
        room: String,
        join: bool,
    },
}

static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn local_view(node_id: &str, sockets: &dyn NodeSockets) -> NodeView {
    let (shown, total) = sockets.admin_view(MAX_SOCKETS_PER_NODE);
    let (websocket, polling) = sockets.count_by_transport(&|_| true);
    NodeView {
        stats: ServerStats {
            server_id: node_id.to_owned(),
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            pid: std::process::id(),
            uptime: STARTED.get_or_init(Instant::now).elapsed().as_secs_f64(),
            clients_count: websocket + polling,
            polling_clients_count: polling,
            namespaces: vec![NamespaceDetails {
                name: push_contract::defaults::NAMESPACE.to_owned(),
                sockets_count: total,
            }],
        },
        sockets: shown,
    }
}

/// Every node's view that arrives within [`DEADLINE`] (this node's alone without Redis).
async fn gather(state: &SharedState) -> Vec<NodeView> {
    let Some(started) = state.started.get() else {
        return Vec::new();
    };
    let Some(link) = &started.link else {
        return vec![local_view(&state.config.node_id, started.sockets.as_ref())];
    };
    let channel = state.keys.admin_ui_channel();
    let reply = crate::cluster_ask::reply_channel(&channel, &state.config.node_id);
    let Ok(question) = serde_json::to_vec(&Message::Snapshot {
        reply: reply.clone(),
    }) else {
        return Vec::new();
    };
    match crate::cluster_ask::ask::<NodeView>(link, &channel, &reply, question, DEADLINE).await {
        Ok((mut views, _asked)) => {
            views.sort_by(|a, b| a.stats.server_id.cmp(&b.stats.server_id));
            views
        }
        Err(e) => {
            tracing::debug!(error = %e, "admin UI: the cluster was not asked");
            vec![local_view(&state.config.node_id, started.sockets.as_ref())]
        }
    }
}

/// Answers the Admin UI's questions until `stop` (every node of a cluster with it on).
pub async fn listen(
    link: RedisLink,
    channel: String,
    node_id: String,
    sockets: std::sync::Arc<dyn NodeSockets>,
    room_change: crate::state::RoomChange,
    stop: CancellationToken,
) {
    STARTED.get_or_init(Instant::now);
    crate::cluster_ask::answer_until(link, channel, stop, |payload| {
        match serde_json::from_slice(payload).ok()? {
            Message::Snapshot { reply } => {
                let view = local_view(&node_id, sockets.as_ref());
                Some((reply, serde_json::to_vec(&view).ok()?))
            }
            Message::Room { sid, room, join } => {
                // The node that holds the socket does it; the others have nothing to do.
                if let Some(change) = room_change(&sid, room, join) {
                    tokio::spawn(change);
                }
                None
            }
        }
    })
    .await;
}

/// The web app's routes on the client port: `/admin-ui/` and its files.
pub fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    // The app's page loads two stylesheets from public CDNs (fonts, icons): dropped, so
    // the page loads nothing from outside the cluster.
    let page = std::fs::read_to_string(dir.join("index.html"))
        .unwrap_or_default()
        .split("<link")
        .enumerate()
        .filter(|(i, part)| {
            *i == 0
                || !part
                    .trim_start()
                    .starts_with("rel=\"stylesheet\" href=\"https://")
        })
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                format!("<link{part}")
            }
        })
        .collect::<String>();
    let dir = dir.to_owned();
    Router::new()
        .route(
            paths::ADMIN_UI,
            get(move || async move { Html(page).into_response() }),
        )
        .route(
            &format!("{}{{*file}}", paths::ADMIN_UI),
            get(move |UrlPath(file): UrlPath<String>| {
                let dir = dir.clone();
                async move { asset(&dir, &file).await }
            }),
        )
}

/// One of the app's files (`css/…`, `js/…`, `img/…`, `favicon.png`): nothing outside its
/// directory, nothing but plain names.
async fn asset(dir: &Path, file: &str) -> Response {
    let plain = !file.is_empty()
        && file.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part != "."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if !plain {
        return StatusCode::NOT_FOUND.into_response();
    }
    let content_type = match file.rsplit('.').next() {
        Some("js") => "application/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("map") | Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ttf") => "font/ttf",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(dir.join(file)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_plain_names_inside_the_app_directory_are_served() {
        let dir = std::env::temp_dir().join(format!("admin-ui-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("js")).expect("temp dir");
        std::fs::write(dir.join("js/app.js"), "x").expect("write");
        std::fs::write(dir.join("index.html"), "<html>").expect("write");
        // The routes build (axum refuses conflicting ones by panicking).
        let _ = routes::<()>(&dir);
        assert_eq!(asset(&dir, "js/app.js").await.status(), StatusCode::OK);
        for bad in [
            "../secret",
            "js/../../etc/passwd",
            "",
            "js//app.js",
            "/etc/passwd",
            "js/a b.js",
            "js/missing.js",
        ] {
            assert_eq!(
                asset(&dir, bad).await.status(),
                StatusCode::NOT_FOUND,
                "{bad:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
