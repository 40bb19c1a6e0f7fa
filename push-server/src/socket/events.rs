//! The events of an admitted socket: subscribe, unsubscribe (within its event
//! budget), disconnect.

use std::sync::{Arc, Mutex};

use push_contract::socket::{SUBSCRIBE, UNSUBSCRIBE};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
    socket::DisconnectReason,
};

use super::{
    expiry, rate, recover,
    rooms::{self, RoomsRequest, malformed, plan_subscribe, plan_unsubscribe, recovering},
};
use crate::{auth::identity::Identity, state::SharedState};

/// Registered by the middleware, before CONNECT is sent: socketioxide runs the
/// (async) connect handler on a spawned task after sending CONNECT, so handlers
/// registered there could miss a `subscribe` the client sends right away.
pub(super) fn register_handlers<A: Adapter>(socket: &SocketRef<A>, state: &SharedState) {
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
    if !recover::settled(&socket).await {
        let _ = ack.send(&recovering());
        return;
    }
    let mut plan = match request {
        Err(e) => malformed(e),
        Ok(req) => plan_subscribe(&identity_of(&socket), socket.rooms().len(), req.rooms),
    };
    if let Some(joined) = &plan.joined {
        state.room_sizes.join(&socket, joined);
        if !recover::joined(&socket, &state, joined).await {
            plan.unrecoverable = Some(joined.clone());
        }
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
    if !recover::settled(&socket).await {
        let _ = ack.send(&recovering());
        return;
    }
    let plan = match request {
        Err(e) => malformed(e),
        Ok(req) => plan_unsubscribe(&identity_of(&socket), req.rooms),
    };
    if let Some(left) = &plan.left {
        state.room_sizes.leave(&socket, left);
        recover::left(&socket, &state, left).await;
    }
    let _ = ack.send(&plan);
}

pub(super) fn identity_of<A: Adapter>(socket: &SocketRef<A>) -> Identity {
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
    let live = !crate::adapter::recovering(&socket);
    state.conns.forget(&socket.id.to_string());
    state.room_sizes.disconnected(&socket);
    expiry::cancel(&socket);
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
