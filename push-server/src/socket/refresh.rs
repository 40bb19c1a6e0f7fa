//! Token refresh in band: before its JWT's `exp`, a socket emits `refresh_token`
//! `{"token"}` with an ack and keeps its connection. The new token must verify, name the
//! same subject and expire later; then the socket's expiry moves to it and the rooms its
//! `rooms` claim no longer allows are left (event `rooms_revoked`). The ack is `{"exp"}`
//! (and `"left"` when rooms were left), or `{"error"}` with the old token still in force.

use push_contract::socket::{RESERVED_ROOM_PREFIX, ROOMS_REVOKED, user_room};
use serde::{Deserialize, Serialize};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{
    expiry,
    extensions::{identity_of, within_budget},
    recover,
};
use crate::{
    auth::identity::{AuthError, Identity},
    state::SharedState,
};

#[derive(Debug, Deserialize)]
pub(super) struct RefreshRequest {
    token: String,
}

/// The ack: the new expiry and the rooms left, or why the refresh was refused.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(super) struct RefreshAck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RefreshAck {
    pub(super) fn refused(reason: impl Into<String>) -> Self {
        Self {
            error: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// The identity a refresh moves to and the rooms it leaves, or why not. `rooms`: the
/// socket's rooms now; its own user room and the server's rooms are never left here.
pub(super) fn plan(
    current: &Identity,
    fresh: Result<Identity, AuthError>,
    rooms: &[String],
) -> Result<(Identity, Vec<String>), String> {
    let fresh = fresh.map_err(|e| format!("the new token is refused: {e}"))?;
    if fresh.user != current.user {
        return Err("the new token names another subject".into());
    }
    if let (Some(old), Some(new)) = (current.expires_at, fresh.expires_at)
        && new <= old
    {
        return Err(format!(
            "the new token expires at {new}, not later than the current one ({old})"
        ));
    }
    let own = current.user.as_deref().map(user_room);
    let left = rooms
        .iter()
        .filter(|room| Some(*room) != own.as_ref() && !room.starts_with(RESERVED_ROOM_PREFIX))
        .filter(|room| fresh.rooms.decide(room, true).is_err())
        .cloned()
        .collect();
    Ok((fresh, left))
}

pub(super) async fn on_refresh<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<RefreshRequest>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    // A JWT verification costs the node more than a room request: the same budget.
    let Some(ack) = within_budget(&socket, ack, || {
        RefreshAck::refused("rate limited: too many requests; slow down")
    }) else {
        return;
    };
    let Some(jwt) = &state.config.jwt else {
        let _ = ack.send(&RefreshAck::refused(
            "token refresh needs JWT authentication, which this server does not use",
        ));
        return;
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            let _ = ack.send(&RefreshAck::refused(format!(
                "malformed: {e} (expected {{\"token\": \"...\"}})"
            )));
            return;
        }
    };
    if !recover::settled(&socket).await {
        let _ = ack.send(&RefreshAck::refused(
            "still recovering: retry once connected",
        ));
        return;
    }
    let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    let (identity, left) = match plan(&identity_of(&socket), jwt.verify(&request.token), &rooms) {
        Ok(planned) => planned,
        Err(reason) => {
            tracing::info!(sid = %socket.id, %reason, "token refresh refused");
            let _ = ack.send(&RefreshAck::refused(reason));
            return;
        }
    };
    if !left.is_empty() {
        state.room_sizes.leave(&socket, &left);
        recover::left(&socket, &state, &left).await;
        super::presence_events::announce(
            &socket,
            &state,
            super::presence_events::Change::Leave,
            &left,
        );
        let _ = socket.emit(
            ROOMS_REVOKED,
            &serde_json::json!({ "rooms": left, "reason": "the refreshed token does not allow them" }),
        );
    }
    let exp = identity.expires_at;
    expiry::cancel(&socket);
    socket.extensions.insert(identity);
    if let Some(exp) = exp {
        expiry::expire_at(&socket, exp);
    }
    tracing::debug!(sid = %socket.id, ?exp, left = left.len(), "token refreshed");
    let _ = ack.send(&RefreshAck {
        exp,
        left,
        error: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::RoomPolicy;

    fn identity(user: &str, exp: i64, rooms: Option<&[&str]>) -> Identity {
        Identity {
            user: Some(user.into()),
            rooms: RoomPolicy::from_claim(rooms.map(|r| r.iter().map(|p| p.to_string()).collect()))
                .expect("valid patterns"),
            publish: None,
            expires_at: Some(exp),
        }
    }

    #[test]
    fn a_refresh_keeps_the_subject_moves_the_expiry_and_leaves_what_is_no_longer_allowed() {
        let current = identity("ann", 100, None);
        let rooms: Vec<String> = ["user:ann", "news.eu", "team-7", "$push:recovering"]
            .iter()
            .map(|r| r.to_string())
            .collect();
        let (fresh, left) = plan(
            &current,
            Ok(identity("ann", 200, Some(&["news.*"]))),
            &rooms,
        )
        .expect("allowed");
        assert_eq!(fresh.expires_at, Some(200));
        assert_eq!(
            left,
            vec!["team-7".to_string()],
            "own and server rooms stay"
        );

        let refused = [
            (
                "another subject",
                plan(&current, Ok(identity("bob", 200, None)), &rooms),
            ),
            (
                "not later",
                plan(&current, Ok(identity("ann", 100, None)), &rooms),
            ),
            (
                "bad token",
                plan(
                    &current,
                    Err(AuthError::InvalidToken("bad signature".into())),
                    &rooms,
                ),
            ),
        ];
        for (case, result) in refused {
            assert!(result.is_err(), "{case}");
        }
    }
}
