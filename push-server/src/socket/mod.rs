//! The socket.io namespace: authentication on connect, subscribe / unsubscribe.

pub mod auth;

use push_contract::{
    defaults,
    socket::{SUBSCRIBE, UNSUBSCRIBE, user_room},
};
use serde::{Deserialize, Serialize};
use socketioxide::{
    SocketIo,
    adapter::{Adapter, Emitter, LocalAdapter},
    extract::{AckSender, SocketRef, State, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};

use self::auth::{AuthError, Identity};
use crate::{ClusterAdapter, conn::ConnHandle, session, state::SharedState};

/// Most rooms one subscribe may name.
pub const MAX_ROOMS_PER_REQUEST: usize = 100;
/// Most rooms one connection may be in (its own room and user room included): bounds
/// what one client can make the node hold.
pub const MAX_ROOMS_PER_SOCKET: usize = 1000;

#[derive(Debug, Default, Deserialize)]
struct AuthPayload {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RoomsRequest {
    rooms: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Refused {
    room: String,
    reason: &'static str,
}

#[derive(Debug, Default, Serialize)]
struct RoomsAck {
    #[serde(skip_serializing_if = "Option::is_none")]
    joined: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Vec<String>>,
    refused: Vec<Refused>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Registers the namespace on a single node.
pub fn register_local(io: &SocketIo<LocalAdapter>) {
    io.ns(
        defaults::NAMESPACE,
        on_connect::<LocalAdapter>.with(authenticate::<LocalAdapter>),
    );
}

/// Registers the namespace with the Redis adapter (which subscribes its channels).
pub async fn register_cluster(io: &SocketIo<ClusterAdapter<Emitter>>) -> Result<(), String> {
    io.ns(
        defaults::NAMESPACE,
        on_connect::<ClusterAdapter<Emitter>>.with(authenticate::<ClusterAdapter<Emitter>>),
    )
    .await
    .map_err(|e| e.to_string())
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
            if let Some(user) = &identity.user {
                socket.join(user_room(user));
            }
            socket.extensions.insert(identity);
            register_handlers(&socket);
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
    let identity = socket
        .extensions
        .get::<Identity>()
        .unwrap_or_else(Identity::anonymous);
    tracing::debug!(sid = %socket.id, user = ?identity.user, transport = ?socket.transport_type(), "connected");
}

/// Registered by the middleware, before CONNECT is sent: socketioxide runs the
/// (async) connect handler on a spawned task after sending CONNECT, so handlers
/// registered there could miss a `subscribe` the client sends right away.
fn register_handlers<A: Adapter>(socket: &SocketRef<A>) {
    socket.on(SUBSCRIBE, on_subscribe::<A>);
    socket.on(UNSUBSCRIBE, on_unsubscribe::<A>);
    socket.on_disconnect(on_disconnect::<A>);
}

fn malformed(e: impl std::fmt::Display) -> RoomsAck {
    RoomsAck {
        error: Some(format!("expected {{\"rooms\": [\"...\"]}}: {e}")),
        ..RoomsAck::default()
    }
}

fn too_many(rooms: &[String]) -> Option<RoomsAck> {
    (rooms.len() > MAX_ROOMS_PER_REQUEST).then(|| RoomsAck {
        error: Some(format!("at most {MAX_ROOMS_PER_REQUEST} rooms per request")),
        ..RoomsAck::default()
    })
}

async fn on_subscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
) {
    let reply = match request {
        Err(e) => malformed(e),
        Ok(req) => too_many(&req.rooms).unwrap_or_else(|| {
            let identity = socket
                .extensions
                .get::<Identity>()
                .unwrap_or_else(Identity::anonymous);
            let mut joined = Vec::new();
            let mut refused = Vec::new();
            let mut room_count = socket.rooms().len();
            for room in req.rooms {
                if room_count >= MAX_ROOMS_PER_SOCKET {
                    refused.push(Refused {
                        room,
                        reason: "this connection is in too many rooms",
                    });
                    continue;
                }
                match identity.rooms.decide(&room, identity.user.is_some()) {
                    Ok(()) => {
                        room_count += 1;
                        joined.push(room);
                    }
                    Err(refusal) => refused.push(Refused {
                        room,
                        reason: refusal.as_str(),
                    }),
                }
            }
            socket.join(joined.clone());
            RoomsAck {
                joined: Some(joined),
                refused,
                ..RoomsAck::default()
            }
        }),
    };
    let _ = ack.send(&reply);
}

async fn on_unsubscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
) {
    let reply = match request {
        Err(e) => malformed(e),
        Ok(req) => too_many(&req.rooms).unwrap_or_else(|| {
            let identity = socket
                .extensions
                .get::<Identity>()
                .unwrap_or_else(Identity::anonymous);
            // A socket cannot leave its own user room: publishes to the user must reach it.
            let own = identity.user.as_deref().map(user_room);
            let (left, kept): (Vec<_>, Vec<_>) =
                req.rooms.into_iter().partition(|r| Some(r) != own.as_ref());
            socket.leave(left.clone());
            let refused = kept
                .into_iter()
                .map(|room| Refused {
                    room,
                    reason: "the own user room cannot be left",
                })
                .collect();
            RoomsAck {
                left: Some(left),
                refused,
                ..RoomsAck::default()
            }
        }),
    };
    let _ = ack.send(&reply);
}

async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    State(state): State<SharedState>,
) {
    state.conns.forget(&socket.id.to_string());
    match reason {
        DisconnectReason::TransportError | DisconnectReason::PacketParsingError => tracing::info!(
            sid = %socket.id,
            %reason,
            "client disconnected by a transport or protocol error (oversized or malformed message?)"
        ),
        _ => tracing::debug!(sid = %socket.id, %reason, "client disconnected"),
    }
}
