//! Message history for socket.io's connection state recovery, in Redis, so a client
//! gets what it missed whichever node it comes back to.
//!
//! - every accepted message is appended to the cluster's fan-out log (a Redis stream
//!   every node reads, `publish::log`) and, with history on, to the history stream of its
//!   room, user or namespace broadcast, in one Lua script: both get the same id, the
//!   message's [`Offset`], and neither can have it without the other (`script`);
//! - each socket has a recovery session in Redis: its private id (`pid`), user, and the
//!   position at which it joined each room (`session`);
//! - a reconnecting client sends `{pid, offset}`; what it missed per stream, and whether
//!   each stream still holds all of it, is decided by pure functions (`recovery`).

pub mod offset;
pub mod recovery;
pub mod script;
pub mod session;

use std::time::Duration;

pub use self::offset::Offset;

/// Bounds of every history stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    pub max_messages: u32,
    pub ttl: Duration,
}

impl HistoryConfig {
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// How long an idempotency key is remembered: as long as history (a retry must not
    /// be delivered twice within it), 5 minutes without history.
    pub fn idempotency_ttl(history: Option<&HistoryConfig>) -> Duration {
        history.map_or(Duration::from_secs(300), |h| h.ttl)
    }

    /// How long a recovery session outlives its socket: a minute more than the history,
    /// so a client away a little too long is told which rooms broke (and keeps them)
    /// rather than that its whole session is gone.
    pub fn session_ttl(&self) -> Duration {
        self.ttl + Duration::from_secs(60)
    }
}

/// Where a recovering socket waits, outside namespace broadcasts, until it has replayed
/// what it missed (a client cannot subscribe to it).
pub const RECOVERING_ROOM: &str = "$push:recovering";

/// What one recovery may replay at most, over all its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub messages: usize,
    pub bytes: usize,
}

/// What one recovery replays at most (a socket may be in 1,000 rooms of 100,000
/// messages each); beyond, its remaining rooms are reported broken.
pub const REPLAY_BUDGET: Budget = Budget {
    messages: 10_000,
    bytes: 16 << 20,
};
/// Recoveries holding their replay in memory at once, per node (the rest wait).
pub const CONCURRENT_RECOVERIES: usize = 32;
/// History streams one recovery read script reads at most: a recovery over many rooms
/// is several short scripts, so publishes run in between.
pub const STREAMS_PER_READ: usize = 64;

/// Entries the fan-out log keeps (approximately: trimmed with `~`). Nodes read it as it
/// grows; it only has to cover a reader that fell behind or reconnected, not history.
pub const LOG_MAX_LEN: u32 = 10_000;

/// A history stream's keys: the stream, where its newest trimmed id is kept, and the id
/// that (re)created it (what came before may have expired with an earlier stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    pub stream: String,
    pub trimmed: String,
    pub created: String,
}

/// The Redis keys of one cluster, all under its channel name (clusters sharing a Redis
/// with different channels do not see each other's keys).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix`: the channel, or `{channel}` with a Redis Cluster (`Config::redis_key_prefix`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The pub/sub channel an append to `room` (`None`: namespace broadcasts) is also
    /// published on, for nodes that receive by interest (`publish::interest`). Every
    /// append is published there whichever way its node receives: a cluster whose nodes
    /// differ (a rolling update from one `PUSH_FANOUT` to the other) loses nothing.
    pub fn room_channel(&self, namespace: &str, room: Option<&str>) -> String {
        match room {
            Some(room) => format!("{}:f:{namespace}:r:{room}", self.prefix),
            None => format!("{}:f:{namespace}:b", self.prefix),
        }
    }

    /// The pub/sub channel on which a node's own position markers come back to it.
    pub fn marker_channel(&self, node: &str) -> String {
        format!("{}:f:node:{node}", self.prefix)
    }

    /// The fan-out log: every message, in order, for every node to deliver.
    pub fn log(&self) -> String {
        format!("{}:log", self.prefix)
    }

    /// The history stream of `room` (`None`: the namespace's broadcasts), and the key
    /// of the newest id trimmed from it.
    pub fn stream(&self, namespace: &str, room: Option<&str>) -> StreamKeys {
        let of = |kind: &str| match room {
            Some(room) => format!("{}:{kind}:{namespace}:r:{room}", self.prefix),
            None => format!("{}:{kind}:{namespace}:b", self.prefix),
        };
        StreamKeys {
            stream: of("h"),
            trimmed: of("t"),
            created: of("c"),
        }
    }

    /// A socket's recovery session.
    pub fn session(&self, pid: &str) -> String {
        format!("{}:s:{pid}", self.prefix)
    }

    /// Who appends what backends PUBLISH on the channel (one node at a time).
    pub fn channel_owner(&self) -> String {
        format!("{}:owner", self.prefix)
    }

    /// How far one node's fan-out log reader got (see `log::Reader`).
    pub fn reader_position(&self, node: &str) -> String {
        format!("{}:reader:{node}", self.prefix)
    }

    /// Where an idempotency key's first offset is kept (see `script::Idempotency`).
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:i:{key}", self.prefix)
    }

    /// A user's sockets per holder (`user_limit`): this prefix and the user id.
    pub fn user_sockets_prefix(&self) -> String {
        format!("{}:user-sockets:", self.prefix)
    }

    /// The heartbeats of the holders of per-user slots (`user_limit`).
    pub fn slot_holders(&self) -> String {
        format!("{}:holders", self.prefix)
    }

    /// The pub/sub channel of presence questions to every node (answers go to
    /// `<this>:<node>:<n>`, a channel of the asking node's own).
    pub fn presence_channel(&self) -> String {
        format!("{}:presence", self.prefix)
    }

    /// The pub/sub channel of the Admin UI's questions to every node (answers like
    /// presence's).
    pub fn admin_ui_channel(&self) -> String {
        format!("{}:admin-ui", self.prefix)
    }

    /// The pub/sub channel of the disconnect API's orders to every node.
    pub fn disconnect_channel(&self) -> String {
        format!("{}:disconnect", self.prefix)
    }

    /// Digests of the last channel messages appended (see `script::Fence`).
    pub fn channel_taken(&self) -> String {
        format!("{}:taken", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovering_room_is_reserved() {
        assert!(RECOVERING_ROOM.starts_with(push_contract::socket::RESERVED_ROOM_PREFIX));
    }

    #[test]
    fn keys_do_not_collide() {
        let keys = Keys::new("push:publish");
        let streams = [
            keys.stream("/", Some("b")),
            keys.stream("/", None),
            keys.stream("/", Some("user:1")),
            keys.stream("/", Some("x:t")),
            keys.stream("/", Some("x")),
        ];
        let mut all = vec![
            keys.log(),
            keys.marker_channel("n"),
            keys.session("b"),
            keys.channel_owner(),
            keys.channel_taken(),
            keys.idempotency("k"),
            keys.reader_position("n"),
        ];
        for room in [Some("b"), None, Some("x")] {
            all.push(keys.room_channel("/", room));
        }
        all.extend(
            streams
                .into_iter()
                .flat_map(|s| [s.stream, s.trimmed, s.created]),
        );
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
    }
}
