//! The events of an admitted socket: subscribe, unsubscribe (within its event
//! budget; made effective by `membership`), presence, refresh_token (`refresh`), publish
//! (`client_publish`), the events handed to the backend (`backend_event`), disconnect.

use push_contract::socket::{PRESENCE, PUBLISH, REFRESH_TOKEN, SUBSCRIBE, UNSUBSCRIBE};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
    socket::DisconnectReason,
};

use super::{
    expiry,
    extensions::{self, within_budget},
    membership::{join, leave},
    presence_events::{self, Change},
    rate, recover,
    rooms::{self, RoomsRequest, malformed},
};
use crate::state::SharedState;

/// Registered by the middleware, before CONNECT is sent: socketioxide runs the
/// (async) connect handler on a spawned task after sending CONNECT, so handlers
/// registered there could miss a `subscribe` the client sends right away.
pub(super) fn register_handlers<A: Adapter>(socket: &SocketRef<A>, state: &SharedState) {
    let budget = rate::EventBudget::new(
        state.config.events_per_second,
        state.config.event_burst,
        std::time::Instant::now(),
    );
    extensions::give_budget(socket, budget);
    socket.on(SUBSCRIBE, on_subscribe::<A>);
    socket.on(UNSUBSCRIBE, on_unsubscribe::<A>);
    socket.on(REFRESH_TOKEN, super::refresh::on_refresh::<A>);
    socket.on(PUBLISH, super::client_publish::on_publish::<A>);
    socket.on(PRESENCE, on_presence::<A>);
    if let Some(backend) = &state.config.backend {
        extensions::give_backend_slots(socket);
        for event in backend.events() {
            socket.on(event.clone(), super::backend_event::on_backend_event::<A>);
        }
    }
    socket.on_disconnect(on_disconnect::<A>);
}

async fn on_subscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack, rooms::rate_limited) else {
        return;
    };
    let plan = match request {
        Err(e) => malformed(e),
        Ok(req) => join(&socket, &state, req.rooms).await,
    };
    let _ = ack.send(&plan);
}

async fn on_unsubscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RoomsRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack, rooms::rate_limited) else {
        return;
    };
    let plan = match request {
        Err(e) => malformed(e),
        Ok(req) => leave(&socket, &state, req.rooms).await,
    };
    let _ = ack.send(&plan);
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceRequest {
    room: String,
}

/// Who is in a room this socket is in, cluster-wide (the first page of users).
async fn on_presence<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<PresenceRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let refused = |reason: String| serde_json::json!({ "error": reason });
    let Some(ack) = within_budget(&socket, ack, || {
        refused("rate limited: too many requests; slow down".into())
    }) else {
        return;
    };
    let answer = match request {
        Err(e) => refused(format!("expected {{\"room\"}}: {e}")),
        Ok(PresenceRequest { room }) if !socket.rooms().iter().any(|r| r.as_ref() == room) => {
            refused(format!(
                "not in {room:?}: presence is told for the socket's own rooms"
            ))
        }
        Ok(PresenceRequest { room }) => {
            match crate::presence::ask(&state, room, None, crate::presence::DEFAULT_LIMIT).await {
                Ok(presence) => serde_json::to_value(presence).unwrap_or_default(),
                Err(e) => refused(e),
            }
        }
    };
    let _ = ack.send(&answer);
}

async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    State(state): State<SharedState>,
) {
    let live = !crate::adapter::recovering(&socket);
    if live {
        let rooms = presence_events::rooms_of(&socket);
        presence_events::announce(&socket, &state, Change::Leave, &rooms);
    }
    state.conns.forget(&socket.id.to_string());
    state.room_sizes.disconnected(&socket);
    expiry::cancel(&socket);
    if let (Some(extensions::UserSlot(user)), Some(slots), Some(link)) = (
        socket.extensions.get::<extensions::UserSlot>(),
        &state.user_slots,
        state.started.get().and_then(|s| s.link.as_ref()),
    ) {
        slots.release(link, &user).await;
    }
    recover::departed(&socket, &state, reason, live).await;
    match reason {
        // The drain moves clients off by cutting their connections: a transport error.
        DisconnectReason::TransportError if state.draining() => {
            tracing::debug!(sid = %socket.id, "client moved off by the drain")
        }
        DisconnectReason::TransportError | DisconnectReason::PacketParsingError => tracing::info!(
            sid = %socket.id,
            %reason,
            "client disconnected by a transport or protocol error (oversized or malformed message?)"
        ),
        _ => tracing::debug!(sid = %socket.id, %reason, "client disconnected"),
    }
}
