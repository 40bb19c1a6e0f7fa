//! socket.io on the client port: its settings, the handshake gate in front of it, and
//! the namespace (authentication on connect, subscribe / unsubscribe).

pub mod gate;
mod rate;
mod rooms;

use push_contract::{
    defaults, paths,
    socket::{AUTH_EXPIRED, SUBSCRIBE, UNSUBSCRIBE, user_room},
};
use serde::Deserialize;
use socketioxide::{
    ParserConfig, SocketIo, SocketIoBuilder,
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};
use std::sync::{Arc, Mutex};

pub use self::rooms::{MAX_ROOMS_PER_REQUEST, MAX_ROOMS_PER_SOCKET};
use self::rooms::{RoomsRequest, malformed, plan_subscribe, plan_unsubscribe};
use crate::{
    adapter::NodeAdapter,
    auth::{
        identity::{AuthError, Identity},
        session,
    },
    config,
    conn::ConnHandle,
    state::SharedState,
};

#[derive(Debug, Default, Deserialize)]
struct AuthPayload {
    #[serde(default)]
    token: Option<String>,
}

/// socket.io's settings from the node's config.
pub fn configure<A: Adapter>(
    builder: SocketIoBuilder<A>,
    state: &SharedState,
) -> SocketIoBuilder<A> {
    let max = state.config.max_payload_bytes;
    builder
        .with_state(state.clone())
        .req_path(paths::SOCKET_IO.trim_end_matches('/').to_owned())
        .max_payload(max as u64)
        // engine.io's max_payload covers only polling bodies; these bound WebSocket
        // messages: an oversized one closes that connection (transport error).
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        .ws_read_buffer_size(config::WS_READ_BUFFER_BYTES)
        // Binary attachments are buffered until a packet is complete: their sum is
        // bounded by our payload limit (socketioxide's default is 10 MB per socket, which
        // let 50 sockets pin 485 MB), their count by a small number, their wait by a
        // short timeout (checked when the next frame arrives; a timer needs an engine patch).
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max)
                .max_incoming_binaries(config::MAX_ATTACHMENTS)
                .packet_completion_timeout(config::ATTACHMENT_COMPLETION_TIMEOUT),
        )
}

/// Registers the namespace; with the Redis adapter, once it has subscribed its channels.
pub async fn register<A: NodeAdapter>(io: &SocketIo<A>) -> Result<(), String> {
    A::add_namespace(
        io,
        defaults::NAMESPACE,
        on_connect::<A>.with(authenticate::<A>),
    )
    .await
}

async fn identify(
    state: &SharedState,
    token: Option<String>,
    parts: &http::request::Parts,
) -> Result<Identity, AuthError> {
    let config = &state.config;
    if let (Some(jwt), Some(token)) = (&config.jwt, token.as_deref()) {
        return jwt.verify(token);
    }
    if let Some(session) = &config.session {
        let link = state
            .started
            .get()
            .and_then(|s| s.link.as_ref())
            .ok_or(AuthError::SessionStoreDown)?;
        return session::identify(session, &link.connection(), &parts.headers)
            .await
            .map_err(|e| match (e, config.jwt.is_some()) {
                (AuthError::MissingCredentials, false) => {
                    AuthError::InvalidSession("no session cookie")
                }
                (e, _) => e,
            });
    }
    if config.jwt.is_some() {
        return Err(AuthError::MissingToken);
    }
    state.warn_open_rooms_once();
    Ok(Identity::anonymous())
}

async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<SharedState>,
    TryData(auth): TryData<AuthPayload>,
) -> Result<(), AuthError> {
    if state.draining() {
        return Err(AuthError::Draining);
    }
    let token = auth.ok().and_then(|a| a.token);
    match identify(&state, token, socket.req_parts()).await {
        Ok(identity) => {
            // Handlers first: the disconnect handler is what uncounts the socket.
            register_handlers(&socket, &state);
            let rooms: Vec<String> = identity.user.iter().map(|u| user_room(u)).collect();
            state.room_sizes.admitted(&socket, &rooms);
            socket.extensions.insert(identity);
            Ok(())
        }
        Err(e) => {
            tracing::info!(sid = %socket.id, reason = %e, "connection refused");
            Err(e)
        }
    }
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<SharedState>) {
    // The handshake's TCP connection (the WebSocket itself for WebSocket-only clients).
    if let Some(conn) = socket.req_parts().extensions.get::<ConnHandle>() {
        state.conns.attach(&socket.id.to_string(), conn);
    }
    let identity = identity_of(&socket);
    if let Some(exp) = identity.expires_at {
        expire_at(&socket, exp);
    }
    tracing::debug!(sid = %socket.id, user = ?identity.user, transport = ?socket.transport_type(), "connected");
}

/// Registered by the middleware, before CONNECT is sent: socketioxide runs the
/// (async) connect handler on a spawned task after sending CONNECT, so handlers
/// registered there could miss a `subscribe` the client sends right away.
fn register_handlers<A: Adapter>(socket: &SocketRef<A>, state: &SharedState) {
    let budget = rate::EventBudget::new(
        state.config.events_per_second,
        state.config.event_burst,
        std::time::Instant::now(),
    );
    socket
        .extensions
        .insert(Budget(Arc::new(Mutex::new(budget))));
    socket.on(SUBSCRIBE, on_subscribe::<A>);
    socket.on(UNSUBSCRIBE, on_unsubscribe::<A>);
    socket.on_disconnect(on_disconnect::<A>);
}

/// The socket's inbound event budget (see `rate`).
#[derive(Clone)]
struct Budget(Arc<Mutex<rate::EventBudget>>);

/// Whether this room request may be served; refuses (error ack) or disconnects a flood.
fn within_budget<A: Adapter>(socket: &SocketRef<A>, ack: AckSender<A>) -> Option<AckSender<A>> {
    let verdict = socket
        .extensions
        .get::<Budget>()
        .map_or(rate::Verdict::Allow, |b| {
            b.0.lock().map_or(rate::Verdict::Allow, |mut budget| {
                budget.take(std::time::Instant::now())
            })
        });
    if verdict == rate::Verdict::Allow {
        return Some(ack);
    }
    let _ = ack.send(&rooms::rate_limited());
    if verdict == rate::Verdict::Disconnect {
        tracing::info!(sid = %socket.id, "room request flood: disconnecting");
        let _ = socket.clone().disconnect();
    }
    None
}

async fn on_subscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack) else {
        return;
    };
    let plan = match request {
        Err(e) => malformed(e),
        Ok(req) => plan_subscribe(&identity_of(&socket), socket.rooms().len(), req.rooms),
    };
    if let Some(joined) = &plan.joined {
        state.room_sizes.join(&socket, joined);
    }
    let _ = ack.send(&plan);
}

async fn on_unsubscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack) else {
        return;
    };
    let plan = match request {
        Err(e) => malformed(e),
        Ok(req) => plan_unsubscribe(&identity_of(&socket), req.rooms),
    };
    if let Some(left) = &plan.left {
        state.room_sizes.leave(&socket, left);
    }
    let _ = ack.send(&plan);
}

/// The timer that ends a socket when its token expires; aborted when it leaves first,
/// so a long-lived token holds nothing for a socket that is gone.
#[derive(Clone)]
struct ExpiryTimer(tokio::task::AbortHandle);

/// A token is checked at the handshake only; without this, a socket kept receiving its
/// user's messages long after its JWT expired. At `exp` it is told why, then disconnected.
fn expire_at<A: Adapter>(socket: &SocketRef<A>, exp: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let wait = std::time::Duration::from_secs_f64((exp as f64 - now).max(0.0));
    let socket2 = socket.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        tracing::info!(sid = %socket2.id, exp, "token expired: disconnecting");
        let _ = socket2.emit(
            AUTH_EXPIRED,
            &serde_json::json!({ "reason": "token expired: reconnect with a fresh token", "exp": exp }),
        );
        let _ = socket2.disconnect();
    });
    socket.extensions.insert(ExpiryTimer(timer.abort_handle()));
    // Gone before the timer was stored: on_disconnect could not abort it.
    if !socket.connected() {
        timer.abort();
    }
}

fn identity_of<A: Adapter>(socket: &SocketRef<A>) -> Identity {
    socket
        .extensions
        .get::<Identity>()
        .unwrap_or_else(Identity::anonymous)
}

async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    State(state): State<SharedState>,
) {
    state.conns.forget(&socket.id.to_string());
    state.room_sizes.disconnected(&socket);
    if let Some(ExpiryTimer(timer)) = socket.extensions.get::<ExpiryTimer>() {
        timer.abort();
    }
    match reason {
        DisconnectReason::TransportError | DisconnectReason::PacketParsingError => tracing::info!(
            sid = %socket.id,
            %reason,
            "client disconnected by a transport or protocol error (oversized or malformed message?)"
        ),
        _ => tracing::debug!(sid = %socket.id, %reason, "client disconnected"),
    }
}
