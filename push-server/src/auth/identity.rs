//! Who a connection is and what it may join: the outcome of JWT or session
//! authentication, and why a connection is refused.

use globset::{Glob, GlobSet, GlobSetBuilder};
use push_contract::socket::{RESERVED_ROOM_PREFIX, USER_ROOM_PREFIX};

/// Why a connection was refused; the text is what the client sees in `connect_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: pass a JWT as auth.token")]
    MissingToken,
    #[error("authentication required: pass a JWT as auth.token or a valid session cookie")]
    MissingCredentials,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid rooms claim: {0}")]
    InvalidRoomsClaim(String),
    #[error("invalid session: {0}")]
    InvalidSession(&'static str),
    #[error("session store unavailable")]
    SessionStoreDown,
    #[error("server is draining: reconnect to another node")]
    Draining,
    #[error("too many connections for this user: the cluster allows {0} at once")]
    TooManyConnections(u32),
}

/// The rooms an identity may subscribe to.
#[derive(Clone, Debug)]
pub enum RoomPolicy {
    /// No `rooms` claim: any room except other users' rooms.
    Any,
    /// The `rooms` claim's glob patterns.
    Globs { patterns: Vec<String>, set: GlobSet },
}

/// Why a subscribe was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLong,
    UserRoom,
    Reserved,
    NotAllowed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Empty => "room name is empty",
            Refusal::TooLong => "room name longer than 200 bytes",
            Refusal::UserRoom => "user rooms are joined from the token, not by subscribing",
            Refusal::Reserved => "rooms starting with `$push:` are the server's own",
            Refusal::NotAllowed => "not allowed by the token's rooms claim",
        }
    }
}

pub const MAX_ROOM_LEN: usize = 200;

impl RoomPolicy {
    pub fn from_claim(patterns: Option<Vec<String>>) -> Result<Self, AuthError> {
        let Some(patterns) = patterns else {
            return Ok(Self::Any);
        };
        let mut builder = GlobSetBuilder::new();
        for pattern in &patterns {
            let glob =
                Glob::new(pattern).map_err(|e| AuthError::InvalidRoomsClaim(e.to_string()))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| AuthError::InvalidRoomsClaim(e.to_string()))?;
        Ok(Self::Globs { patterns, set })
    }

    /// Whether a socket may subscribe to `room`. `authenticated` = JWT or session mode,
    /// where `user:` rooms come only from the credential.
    pub fn decide(&self, room: &str, authenticated: bool) -> Result<(), Refusal> {
        if room.is_empty() {
            return Err(Refusal::Empty);
        }
        if room.len() > MAX_ROOM_LEN {
            return Err(Refusal::TooLong);
        }
        if authenticated && room.starts_with(USER_ROOM_PREFIX) {
            return Err(Refusal::UserRoom);
        }
        if room.starts_with(RESERVED_ROOM_PREFIX) {
            return Err(Refusal::Reserved);
        }
        match self {
            Self::Any => Ok(()),
            Self::Globs { set, .. } if set.is_match(room) => Ok(()),
            Self::Globs { .. } => Err(Refusal::NotAllowed),
        }
    }
}

/// A verified connection: its user (if any) and what it may join.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: Option<String>,
    pub rooms: RoomPolicy,
    /// The rooms it may publish to (`publish` event); `None`: none.
    pub publish: Option<RoomPolicy>,
    /// The token's `exp` (seconds since the epoch): the socket is disconnected then.
    pub expires_at: Option<i64>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Self {
            user: None,
            rooms: RoomPolicy::Any,
            publish: None,
            expires_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_policy_decides() {
        let globs =
            RoomPolicy::from_claim(Some(vec!["news.*".into(), "team-42".into()])).expect("globs");
        let cases = [
            ("glob match", &globs, "news.sport", true, Ok(())),
            ("exact match", &globs, "team-42", true, Ok(())),
            (
                "no match",
                &globs,
                "team-43",
                true,
                Err(Refusal::NotAllowed),
            ),
            (
                "user room refused when authenticated",
                &RoomPolicy::Any,
                "user:bob",
                true,
                Err(Refusal::UserRoom),
            ),
            (
                "user room allowed in open mode",
                &RoomPolicy::Any,
                "user:bob",
                false,
                Ok(()),
            ),
            ("empty", &RoomPolicy::Any, "", false, Err(Refusal::Empty)),
            (
                "the server's own rooms",
                &RoomPolicy::Any,
                "$push:recovering",
                false,
                Err(Refusal::Reserved),
            ),
        ];
        for (name, policy, room, authenticated, want) in cases {
            assert_eq!(policy.decide(room, authenticated), want, "case {name}");
        }
        let long = "x".repeat(MAX_ROOM_LEN + 1);
        assert_eq!(RoomPolicy::Any.decide(&long, false), Err(Refusal::TooLong));
    }
}
