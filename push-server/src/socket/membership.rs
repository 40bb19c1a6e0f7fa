//! Joins and leaves made effective for one socket — a `subscribe` / `unsubscribe`, a
//! backend's answer, an administrator's order: the room sizes, the interest
//! subscription, the recovery session and the presence events follow.

use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{
    extensions::identity_of,
    presence_events::{self, Change},
    recover,
    rooms::{self, RoomsAck, plan_subscribe, plan_unsubscribe, recovering},
};
use crate::state::SharedState;

/// Joins (`true`) or leaves `room` for the node's socket `sid` (the Admin UI's actions):
/// within its token's rooms, as a `subscribe` would; `None` when this node has no such
/// socket.
pub fn change_room<A: Adapter>(
    io: &socketioxide::SocketIo<A>,
    state: &SharedState,
    sid: &str,
    room: String,
    join_it: bool,
) -> Option<futures::future::BoxFuture<'static, ()>> {
    let socket = io.sockets().into_iter().find(|s| s.id.as_str() == sid)?;
    let state = state.clone();
    Some(Box::pin(async move {
        let done = if join_it {
            join(&socket, &state, vec![room]).await
        } else {
            leave(&socket, &state, vec![room]).await
        };
        tracing::info!(sid = %socket.id, join = join_it, ?done, "room changed by an administrator");
    }))
}

/// Joins the rooms the socket's identity allows (a `subscribe`, or a backend's answer).
pub(super) async fn join<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    rooms: Vec<String>,
) -> RoomsAck {
    if !recover::settled(socket).await {
        return recovering();
    }
    let mut plan = plan_subscribe(&identity_of(socket), socket.rooms().len(), rooms);
    if let Some(joined) = &plan.joined
        && !recover::receiving(state, joined).await
    {
        return rooms::not_receiving();
    }
    if let Some(joined) = &plan.joined {
        state.room_sizes.join(socket, joined);
        if !recover::joined(socket, state, joined).await {
            plan.unrecoverable = Some(joined.clone());
        }
        presence_events::announce(socket, state, Change::Join, joined);
    }
    plan
}

/// Leaves rooms (an `unsubscribe`, or a backend's answer); never the own user room.
pub(super) async fn leave<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    rooms: Vec<String>,
) -> RoomsAck {
    if !recover::settled(socket).await {
        return recovering();
    }
    let plan = plan_unsubscribe(&identity_of(socket), rooms);
    if let Some(left) = &plan.left {
        state.room_sizes.leave(socket, left);
        recover::left(socket, state, left).await;
        presence_events::announce(socket, state, Change::Leave, left);
    }
    plan
}
