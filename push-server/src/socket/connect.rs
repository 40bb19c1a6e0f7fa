//! The connect step: who the client is (JWT, session cookie, or anyone in open mode),
//! decided before socket.io sends CONNECT.

use push_contract::socket::user_room;
use serde::Deserialize;
use socketioxide::{
    adapter::Adapter,
    extract::{SocketRef, State, TryData},
};

use super::{
    events::register_handlers,
    expiry,
    extensions::{UserSlot, identity_of},
    recover,
};
use crate::{
    auth::{
        identity::{AuthError, Identity},
        session,
    },
    conn::ConnHandle,
    state::SharedState,
    user_limit,
};

/// The CONNECT payload: the app's `auth` (a JWT in `token`), merged by the official
/// client with `{pid, offset}` when it asks to recover its session.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuthPayload {
    #[serde(default)]
    token: Option<String>,
    /// Lenient: a field of another type means "no recovery", not "no token".
    #[serde(default)]
    pid: Option<serde_json::Value>,
    #[serde(default)]
    offset: Option<serde_json::Value>,
}

impl AuthPayload {
    fn recovery(&self) -> recover::Asked {
        let text =
            |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_str()).map(str::to_owned);
        recover::Asked {
            pid: text(&self.pid),
            offset: text(&self.offset),
        }
    }
}

/// A JWT when one was sent and JWTs are on, else the session cookie when sessions are
/// on; open mode (neither configured) lets anyone in.
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
        return session::identify(session, link, &parts.headers)
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

pub(super) async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<SharedState>,
    TryData(auth): TryData<AuthPayload>,
) -> Result<(), AuthError> {
    if state.draining() {
        return Err(AuthError::Draining);
    }
    let auth = auth.unwrap_or_default();
    let asked = auth.recovery();
    match identify(&state, auth.token, socket.req_parts()).await {
        Ok(identity) => {
            if let Some(user) = identity.user.as_deref()
                && let Err(full) = take_user_slot(&socket, &state, user).await
            {
                state.metrics.user_limit_refusals.inc();
                let refused = AuthError::TooManyConnections(full.limit);
                tracing::info!(sid = %socket.id, reason = %refused, "connection refused");
                return Err(refused);
            }
            // Handlers first: the disconnect handler is what uncounts the socket.
            register_handlers(&socket, &state);
            let rooms = match &state.config.history {
                Some(history) => recover::prepare(&socket, &state, history, &identity, asked).await,
                None => {
                    let rooms: Vec<String> = identity.user.iter().map(|u| user_room(u)).collect();
                    if recover::receiving(&state, &rooms).await {
                        rooms
                    } else {
                        recover::not_now(&socket, None)
                    }
                }
            };
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

/// A slot of the per-user limit for this socket; kept on it as [`UserSlot`] when
/// counted in Redis, for the disconnect handler to give back.
async fn take_user_slot<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    user: &str,
) -> Result<(), user_limit::Full> {
    let (Some(slots), Some(started)) = (&state.user_slots, state.started.get()) else {
        return Ok(());
    };
    match &started.link {
        Some(link) => {
            if slots.take(link, user).await? {
                socket.extensions.insert(UserSlot(user.to_owned()));
            }
            Ok(())
        }
        None => user_limit::local_room(started.sockets.as_ref(), user, slots.limit),
    }
}

pub(super) async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<SharedState>) {
    // The handshake's TCP connection (the WebSocket itself for WebSocket-only clients),
    // known before the replay: a recovery that wants the client back cuts it.
    if let Some(conn) = socket.req_parts().extensions.get::<ConnHandle>() {
        state.conns.attach(&socket.id.to_string(), conn);
    }
    recover::finish(&socket, &state).await;
    let identity = identity_of(&socket);
    if let Some(exp) = identity.expires_at {
        expiry::expire_at(&socket, exp);
    }
    tracing::debug!(sid = %socket.id, user = ?identity.user, transport = ?socket.transport_type(), "connected");
}
