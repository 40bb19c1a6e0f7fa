//! A socket's recovery session in Redis, so any node can restore it: one hash per
//! private id (`pid`) with the socket's user (`u`), the position it connected at (`c`),
//! the Redis time up to which it is known to have received everything (`a`) and, per
//! room it subscribed to, the position it joined at (`r:<room>`). Kept for the history
//! TTL after the socket's node last refreshed it; deleted when the client leaves on its
//! own or its recovery broke.

use std::{collections::BTreeMap, sync::LazyLock, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{AsyncCommands, Script, aio::ConnectionManager};

use super::Offset;

const USER: &str = "u";
const CONNECTED_AT: &str = "c";
const RECEIVED_THROUGH: &str = "a";
const ROOM_PREFIX: &str = "r:";
/// The longest pid a client may send back (ours are 22 characters).
const MAX_PID_LEN: usize = 64;

/// A fresh private id: 128 random bits, URL-safe. `None` when the OS has no randomness
/// to give (then the socket simply has no recovery).
pub fn new_pid() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether a client-sent pid can be one of ours (checked before it becomes a key).
pub fn plausible_pid(pid: &str) -> bool {
    !pid.is_empty()
        && pid.len() <= MAX_PID_LEN
        && pid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub user: Option<String>,
    /// Where the socket was when it connected: the start of its user room and of the
    /// namespace broadcasts.
    pub connected_at: Offset,
    /// Rooms it subscribed to, with the position it joined each at.
    pub rooms: BTreeMap<String, Offset>,
    /// Redis time (ms) up to which the socket had received everything sent to it: it
    /// was connected and answering heartbeats then (see [`keep`]). `None`: not known.
    pub received_through_ms: Option<u64>,
}

impl Session {
    /// The hash's fields as stored.
    fn fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            (USER.to_owned(), self.user.clone().unwrap_or_default()),
            (CONNECTED_AT.to_owned(), self.connected_at.to_string()),
        ];
        fields.extend(
            self.rooms
                .iter()
                .map(|(room, at)| (format!("{ROOM_PREFIX}{room}"), at.to_string())),
        );
        if let Some(ms) = self.received_through_ms {
            fields.push((RECEIVED_THROUGH.to_owned(), ms.to_string()));
        }
        fields
    }

    /// The session stored as `fields`; `None` when it is not one (or is gone).
    fn from_fields(fields: BTreeMap<String, String>) -> Option<Self> {
        let mut session = Session {
            connected_at: fields.get(CONNECTED_AT)?.parse().ok()?,
            user: fields.get(USER).filter(|u| !u.is_empty()).cloned(),
            rooms: BTreeMap::new(),
            received_through_ms: fields.get(RECEIVED_THROUGH).and_then(|a| a.parse().ok()),
        };
        for (field, value) in fields {
            if let Some(room) = field.strip_prefix(ROOM_PREFIX) {
                session.rooms.insert(room.to_owned(), value.parse().ok()?);
            }
        }
        Some(session)
    }
}

fn ttl_seconds(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// Writes a whole session (replacing one under the same key).
pub async fn store(
    conn: &mut ConnectionManager,
    key: &str,
    session: &Session,
    ttl: std::time::Duration,
) -> redis::RedisResult<()> {
    redis::pipe()
        .atomic()
        .del(key)
        .hset_multiple(key, &session.fields())
        .expire(key, ttl_seconds(ttl))
        .query_async(conn)
        .await
}

pub async fn load(conn: &mut ConnectionManager, key: &str) -> redis::RedisResult<Option<Session>> {
    let fields: BTreeMap<String, String> = conn.hgetall(key).await?;
    Ok(Session::from_fields(fields))
}

/// Records rooms joined at `at`; a room already in the session keeps its position (a
/// second subscribe must not skip what the socket missed since its first). On a session
/// that is gone this leaves a hash without `c`, which loads as gone (and expires): a
/// gone session stays gone.
pub async fn joined(
    conn: &mut ConnectionManager,
    key: &str,
    rooms: &[String],
    at: Offset,
    ttl: std::time::Duration,
) -> redis::RedisResult<()> {
    if rooms.is_empty() {
        return Ok(());
    }
    let at = at.to_string();
    let mut pipe = redis::pipe();
    for room in rooms {
        pipe.hset_nx(key, format!("{ROOM_PREFIX}{room}"), &at)
            .ignore();
    }
    pipe.expire(key, ttl_seconds(ttl))
        .ignore()
        .query_async(conn)
        .await
}

/// Ends a session: the client left on its own, or its recovery broke (a new pid follows).
pub async fn delete(conn: &mut ConnectionManager, key: &str) -> redis::RedisResult<()> {
    conn.del(key).await
}

pub async fn left(
    conn: &mut ConnectionManager,
    key: &str,
    rooms: &[String],
) -> redis::RedisResult<()> {
    if rooms.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = rooms.iter().map(|r| format!("{ROOM_PREFIX}{r}")).collect();
    conn.hdel(key, fields).await
}

/// Keeps sessions for another TTL (KEYS; ARGV[1] seconds) and, for the first ARGV[3] of
/// them (sockets in their rooms), records Redis's time less ARGV[2] ms as where they
/// have received everything: a heartbeat answered within that margin proves the client
/// read all that was written before it. A session that is gone stays gone.
const KEEP: &str = r#"
local now = redis.call('TIME')
local through = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if redis.call('EXPIRE', key, ARGV[1]) == 1 and i <= tonumber(ARGV[3]) then
    redis.call('HSET', key, 'a', through)
  end
end
return 0
"#;
static KEEP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(KEEP));

/// Keeps the sessions `live` (sockets in their rooms: marked received through now less
/// `grace`) and `waiting` (sockets still recovering: only kept) for another `ttl`.
pub async fn keep(
    conn: &mut ConnectionManager,
    live: &[String],
    waiting: &[String],
    grace: Duration,
    ttl: Duration,
) -> redis::RedisResult<()> {
    if live.is_empty() && waiting.is_empty() {
        return Ok(());
    }
    let mut invocation = KEEP_SCRIPT.prepare_invoke();
    for key in live.iter().chain(waiting) {
        invocation.key(key);
    }
    invocation
        .arg(ttl_seconds(ttl))
        .arg(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX))
        .arg(live.len());
    invocation.invoke_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_through_their_fields() {
        let session = Session {
            user: Some("u1".into()),
            connected_at: Offset { ms: 5, seq: 1 },
            rooms: BTreeMap::from([
                ("news".into(), Offset { ms: 6, seq: 0 }),
                ("r:odd".into(), Offset { ms: 7, seq: 2 }),
            ]),
            received_through_ms: Some(9),
        };
        let fields = session.fields().into_iter().collect();
        assert_eq!(Session::from_fields(fields), Some(session));
        let anonymous = Session::default();
        let fields = anonymous.fields().into_iter().collect();
        assert_eq!(Session::from_fields(fields), Some(anonymous));
        assert_eq!(Session::from_fields(BTreeMap::new()), None, "gone");
        let bad = BTreeMap::from([("c".to_owned(), "x".to_owned())]);
        assert_eq!(Session::from_fields(bad), None);
    }

    #[test]
    fn pids_are_fresh_and_client_pids_are_checked() {
        let a = new_pid().expect("randomness");
        let b = new_pid().expect("randomness");
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(plausible_pid(&a));
        for bad in ["", "a b", "x:y", "../k", &"a".repeat(65), "é"] {
            assert!(!plausible_pid(bad), "{bad:?}");
        }
    }
}
