//! Join and leave events to a room's members (`PUSH_PRESENCE_EVENTS`): when a socket of a
//! user enters or leaves a room, the room's other members on every node get
//! `presence_join` / `presence_leave` `{"room", "user"}` through the socket.io adapter
//! (live only: no offset, not in history). One node sends at most
//! `PUSH_PRESENCE_EVENTS_PER_SECOND` per room (bursts of twice that); beyond, they are
//! dropped and counted, so a reconnect storm into a big room is not squared into one.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use push_contract::socket::{
    PRESENCE_JOIN, PRESENCE_LEAVE, RESERVED_ROOM_PREFIX, USER_ROOM_PREFIX,
};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{extensions::identity_of, rate::TokenBucket};
use crate::{metrics::PresenceResult, state::SharedState};

/// Rooms whose rate one node tracks at once; a room beyond (all tracked ones busy right
/// now) gets no presence event until one is idle again.
pub const MAX_TRACKED_ROOMS: usize = 10_000;

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

/// The per-room rates of one node.
pub struct PresenceEvents {
    per_second: u32,
    rooms: Mutex<HashMap<String, TokenBucket>>,
}

impl PresenceEvents {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one event from the room's rate.
    fn take(&self, room: &str, now: Instant) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        if !rooms.contains_key(room) && rooms.len() >= MAX_TRACKED_ROOMS {
            // Forget the rooms whose bucket has refilled: they are idle.
            rooms.retain(|_, bucket| !bucket.is_full(now));
            if rooms.len() >= MAX_TRACKED_ROOMS {
                return false;
            }
        }
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| TokenBucket::new(self.per_second, self.per_second * 2, now))
            .take(now)
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
    use std::time::Duration;

    #[test]
    fn each_room_has_its_own_rate_and_the_tracked_rooms_are_bounded() {
        let events = PresenceEvents::new(2);
        let start = Instant::now();
        let burst = (0..5).filter(|_| events.take("a", start)).count();
        assert_eq!(burst, 4, "bursts of twice the rate");
        assert!(events.take("b", start), "another room has its own");
        assert!(
            events.take("a", start + Duration::from_millis(500)),
            "refilled"
        );
        let many = PresenceEvents::new(1);
        for n in 0..MAX_TRACKED_ROOMS {
            assert!(many.take(&format!("r{n}"), start));
        }
        assert!(
            !many.take("one-more", start),
            "every tracked room busy: no event"
        );
        assert!(
            many.take("one-more", start + Duration::from_secs(5)),
            "idle rooms are forgotten"
        );
    }

    #[test]
    fn only_rooms_a_client_chose_are_announced() {
        assert!(announced("chat.lobby", "sid1"));
        assert!(!announced("user:ann", "sid1"));
        assert!(!announced("$push:recovering", "sid1"));
        assert!(!announced("sid1", "sid1"));
    }
}
