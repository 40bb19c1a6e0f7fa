//! Join and leave events to a room's members (`PUSH_PRESENCE_EVENTS`): when a socket of a
//! user enters or leaves a room, the room's other members on every node get
//! `presence_join` / `presence_leave` `{"room", "user"}` through the socket.io adapter
//! (live only: no offset, not in history). One node sends at most
//! `PUSH_PRESENCE_EVENTS_PER_SECOND` per room (bursts of twice that); beyond, they are
//! dropped and counted, so a reconnect storm into a big room is not squared into one.

use std::time::Instant;

use push_contract::socket::{
    PRESENCE_JOIN, PRESENCE_LEAVE, RESERVED_ROOM_PREFIX, USER_ROOM_PREFIX,
};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::extensions::identity_of;
use crate::{metrics::PresenceResult, state::SharedState};

/// Whether a socket entered or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Join,
    Leave,
}

impl Change {
    fn event(self) -> &'static str {
        match self {
            Self::Join => PRESENCE_JOIN,
            Self::Leave => PRESENCE_LEAVE,
        }
    }
}

/// Rooms presence is told for: those a client chose (not its user room, the server's own,
/// or its socket id).
fn announced(room: &str, sid: &str) -> bool {
    !room.starts_with(USER_ROOM_PREFIX) && !room.starts_with(RESERVED_ROOM_PREFIX) && room != sid
}

/// Tells the members of `rooms` (on every node, the socket itself excepted) that the
/// socket's user joined or left them. Anonymous sockets are not announced.
pub(super) fn announce<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    change: Change,
    rooms: &[String],
) {
    let Some(events) = &state.presence_events else {
        return;
    };
    let Some(user) = identity_of(socket).user else {
        return;
    };
    let sid = socket.id.to_string();
    let now = Instant::now();
    for room in rooms.iter().filter(|r| announced(r, &sid)) {
        if !events.take(room, now) {
            state.metrics.presence_event(PresenceResult::dropped);
            continue;
        }
        state.metrics.presence_event(PresenceResult::sent);
        let members = socket.to(room.clone());
        let data = serde_json::json!({ "room": room, "user": user });
        // Not awaited by the request that caused it: the adapter's publish is Redis's.
        tokio::spawn(async move {
            if let Err(e) = members.emit(change.event(), &data).await {
                tracing::debug!(error = %e, "presence event not sent");
            }
        });
    }
}

/// Every announced room the socket is in (at its disconnect).
pub(super) fn rooms_of<A: Adapter>(socket: &SocketRef<A>) -> Vec<String> {
    socket.rooms().iter().map(|r| r.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rooms_a_client_chose_are_announced() {
        assert!(announced("chat.lobby", "sid1"));
        assert!(!announced("user:ann", "sid1"));
        assert!(!announced("$push:recovering", "sid1"));
        assert!(!announced("sid1", "sid1"));
    }
}
