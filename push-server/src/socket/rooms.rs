//! Which rooms a subscribe / unsubscribe joins, leaves or refuses: pure plans the
//! socket handlers apply.

use push_contract::socket::user_room;
use serde::{Deserialize, Serialize};

use crate::auth::identity::Identity;

/// Most rooms one subscribe may name.
pub const MAX_ROOMS_PER_REQUEST: usize = 100;
/// Most rooms one connection may be in (its own room and user room included): bounds
/// what one client can make the node hold.
pub const MAX_ROOMS_PER_SOCKET: usize = 1000;

const TOO_MANY_ROOMS_ON_SOCKET: &str = "this connection is in too many rooms";
const OWN_USER_ROOM: &str = "the own user room cannot be left";

#[derive(Debug, Deserialize)]
pub(super) struct RoomsRequest {
    pub rooms: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct Refused {
    pub room: String,
    pub reason: &'static str,
}

/// The ack of a subscribe / unsubscribe, and the plan the handler applies
/// (`joined` to join, `left` to leave).
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct RoomsAck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<Vec<String>>,
    pub refused: Vec<Refused>,
    /// Joined rooms the socket's recovery session could not record: live now, but a
    /// reconnect may not restore them (subscribe again after one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecoverable: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) fn malformed(e: impl std::fmt::Display) -> RoomsAck {
    RoomsAck {
        error: Some(format!("expected {{\"rooms\": [\"...\"]}}: {e}")),
        ..RoomsAck::default()
    }
}

/// The ack of a room request over the socket's event budget: no work was done.
pub(super) fn rate_limited() -> RoomsAck {
    RoomsAck {
        error: Some("rate limited: too many room requests; slow down".to_string()),
        ..RoomsAck::default()
    }
}

/// The ack of a room request that came while the socket's recovery was still replaying
/// (joining then would deliver live messages ahead of missed ones): nothing was done.
pub(super) fn recovering() -> RoomsAck {
    RoomsAck {
        error: Some(
            "this connection is still recovering what it missed; retry once that is done"
                .to_string(),
        ),
        ..RoomsAck::default()
    }
}

/// The ack of a subscribe this node could not make effective (with delivery by
/// interest, Redis did not confirm the subscription in time): nothing was joined.
pub(super) fn not_receiving() -> RoomsAck {
    RoomsAck {
        error: Some(
            "this node cannot receive these rooms' messages now (Redis unreachable); retry"
                .to_string(),
        ),
        ..RoomsAck::default()
    }
}

fn too_many(rooms: &[String]) -> Option<RoomsAck> {
    (rooms.len() > MAX_ROOMS_PER_REQUEST).then(|| RoomsAck {
        error: Some(format!("at most {MAX_ROOMS_PER_REQUEST} rooms per request")),
        ..RoomsAck::default()
    })
}

/// The rooms to join and refuse for a socket already in `current_room_count` rooms.
pub(super) fn plan_subscribe(
    identity: &Identity,
    current_room_count: usize,
    rooms: Vec<String>,
) -> RoomsAck {
    if let Some(ack) = too_many(&rooms) {
        return ack;
    }
    let mut joined = Vec::new();
    let mut refused = Vec::new();
    let mut room_count = current_room_count;
    for room in rooms {
        if room_count >= MAX_ROOMS_PER_SOCKET {
            refused.push(Refused {
                room,
                reason: TOO_MANY_ROOMS_ON_SOCKET,
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
    RoomsAck {
        joined: Some(joined),
        refused,
        ..RoomsAck::default()
    }
}

/// The rooms to leave and refuse.
pub(super) fn plan_unsubscribe(identity: &Identity, rooms: Vec<String>) -> RoomsAck {
    if let Some(ack) = too_many(&rooms) {
        return ack;
    }
    // A socket cannot leave its own user room: publishes to the user must reach it.
    let own = identity.user.as_deref().map(user_room);
    let (left, kept): (Vec<_>, Vec<_>) = rooms.into_iter().partition(|r| Some(r) != own.as_ref());
    let refused = kept
        .into_iter()
        .map(|room| Refused {
            room,
            reason: OWN_USER_ROOM,
        })
        .collect();
    RoomsAck {
        left: Some(left),
        refused,
        ..RoomsAck::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::identity::{Refusal, RoomPolicy};

    fn user(name: &str, claim: Option<&[&str]>) -> Identity {
        let patterns = claim.map(|c| c.iter().map(|p| p.to_string()).collect());
        Identity {
            user: Some(name.to_string()),
            rooms: RoomPolicy::from_claim(patterns).expect("valid test claim"),
            publish: None,
            expires_at: None,
        }
    }

    fn names(rooms: &[&str]) -> Vec<String> {
        rooms.iter().map(|r| r.to_string()).collect()
    }

    fn refused(room: &str, reason: &'static str) -> Refused {
        Refused {
            room: room.to_string(),
            reason,
        }
    }

    fn joined(rooms: &[&str], refusals: Vec<Refused>) -> RoomsAck {
        RoomsAck {
            joined: Some(names(rooms)),
            refused: refusals,
            ..RoomsAck::default()
        }
    }

    fn left(rooms: &[&str], refusals: Vec<Refused>) -> RoomsAck {
        RoomsAck {
            left: Some(names(rooms)),
            refused: refusals,
            ..RoomsAck::default()
        }
    }

    fn too_many_in_request() -> RoomsAck {
        RoomsAck {
            error: Some(format!("at most {MAX_ROOMS_PER_REQUEST} rooms per request")),
            ..RoomsAck::default()
        }
    }

    #[test]
    fn plan_subscribe_cases() {
        let over_request: Vec<String> = (0..=MAX_ROOMS_PER_REQUEST)
            .map(|i| format!("r{i}"))
            .collect();
        let cases: Vec<(&str, Identity, usize, Vec<String>, RoomsAck)> = vec![
            (
                "allowed",
                Identity::anonymous(),
                1,
                names(&["news", "sport"]),
                joined(&["news", "sport"], vec![]),
            ),
            (
                "refused by the rooms claim",
                user("ann", Some(&["team:*"])),
                2,
                names(&["team:a", "news"]),
                joined(
                    &["team:a"],
                    vec![refused("news", Refusal::NotAllowed.as_str())],
                ),
            ),
            (
                "another user's room refused to an authenticated socket",
                user("ann", None),
                2,
                vec![user_room("bob")],
                joined(
                    &[],
                    vec![refused(&user_room("bob"), Refusal::UserRoom.as_str())],
                ),
            ),
            (
                "over the per-connection limit: joins up to it, refuses the rest",
                Identity::anonymous(),
                MAX_ROOMS_PER_SOCKET - 1,
                names(&["a", "b"]),
                joined(&["a"], vec![refused("b", TOO_MANY_ROOMS_ON_SOCKET)]),
            ),
            (
                "refused rooms do not count towards the limit",
                Identity::anonymous(),
                MAX_ROOMS_PER_SOCKET - 1,
                names(&["", "a"]),
                joined(&["a"], vec![refused("", Refusal::Empty.as_str())]),
            ),
            (
                "too many in one request",
                Identity::anonymous(),
                1,
                over_request,
                too_many_in_request(),
            ),
        ];
        for (name, identity, count, rooms, want) in cases {
            assert_eq!(
                plan_subscribe(&identity, count, rooms),
                want,
                "case: {name}"
            );
        }
    }

    #[test]
    fn plan_unsubscribe_cases() {
        let over_request: Vec<String> = (0..=MAX_ROOMS_PER_REQUEST)
            .map(|i| format!("r{i}"))
            .collect();
        let cases: Vec<(&str, Identity, Vec<String>, RoomsAck)> = vec![
            (
                "allowed",
                user("ann", None),
                vec!["news".to_string(), user_room("bob")],
                left(&["news", &user_room("bob")], vec![]),
            ),
            (
                "own user room cannot be left",
                user("ann", None),
                vec!["news".to_string(), user_room("ann")],
                left(&["news"], vec![refused(&user_room("ann"), OWN_USER_ROOM)]),
            ),
            (
                "anonymous has no own user room",
                Identity::anonymous(),
                vec![user_room("ann")],
                left(&[&user_room("ann")], vec![]),
            ),
            (
                "too many in one request",
                user("ann", None),
                over_request,
                too_many_in_request(),
            ),
        ];
        for (name, identity, rooms, want) in cases {
            assert_eq!(plan_unsubscribe(&identity, rooms), want, "case: {name}");
        }
    }

    /// The e2e suites and clients read these exact keys.
    #[test]
    fn ack_json_keeps_its_shape() {
        let sub = plan_subscribe(&user("ann", Some(&["team:*"])), 2, names(&["team:a", "x"]));
        assert_eq!(
            serde_json::to_value(&sub).expect("serializes"),
            json!({"joined": ["team:a"], "refused": [{"room": "x", "reason": "not allowed by the token's rooms claim"}]})
        );
        let unsub = plan_unsubscribe(&user("ann", None), vec![user_room("ann")]);
        assert_eq!(
            serde_json::to_value(&unsub).expect("serializes"),
            json!({"left": [], "refused": [{"room": user_room("ann"), "reason": "the own user room cannot be left"}]})
        );
        assert_eq!(
            serde_json::to_value(malformed("missing field `rooms`")).expect("serializes"),
            json!({"refused": [], "error": "expected {\"rooms\": [\"...\"]}: missing field `rooms`"})
        );
    }
}
