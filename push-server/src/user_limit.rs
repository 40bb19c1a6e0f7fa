//! Connections per user across the cluster (`PUSH_MAX_CONNECTIONS_PER_USER`): a handshake
//! of a user who already has that many sockets is refused with a clear error.
//!
//! With Redis, each user with sockets has a hash `<prefix>:user-sockets:<user>` of
//! holder (one node process) → its sockets of that user; one script counts the live
//! holders' sockets and takes a slot in the same step, so two nodes admitting at once
//! cannot both pass the last slot. A holder is live while its heartbeat in
//! `<prefix>:holders` is recent ([`HOLDER_TIMEOUT`]): a node that crashed stops counting
//! within that time (its entries are dropped when next seen). Approximate where it must
//! be, and documented so: a socket whose disconnect was not seen (the node died) holds
//! its slot until the holder times out; a hash idle for [`IDLE_TTL`] (no connect nor
//! disconnect of that user) expires, and its sockets stop counting. While Redis is away
//! the limit is not enforced (sessions and publishes need it anyway). Without Redis the
//! node counts its own sockets in the user's room.

use std::sync::LazyLock;
use std::time::Duration;

use push_contract::socket::user_room;
use redis::Script;
use tokio_util::sync::CancellationToken;

use crate::{adapter::NodeSockets, redis_link::RedisLink};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A holder not heard from for this long no longer counts.
pub const HOLDER_TIMEOUT: Duration = Duration::from_secs(15);
/// A user's hash not touched for this long expires.
pub const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Takes a slot unless the live holders' sockets reach the limit: returns the count
/// with this one (> 0), or minus the count found (≤ 0) when refused.
const ADMIT: &str = r#"
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local live_after = now_ms - tonumber(ARGV[3])
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local holder, n = fields[i], tonumber(fields[i + 1]) or 0
  local beat = holder == ARGV[1] and now_ms or tonumber(redis.call('ZSCORE', KEYS[2], holder) or 0)
  if beat >= live_after then
    total = total + n
  else
    redis.call('HDEL', KEYS[1], holder)
  end
end
if total >= tonumber(ARGV[2]) then
  return -total
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return total + 1
"#;
/// Gives a slot back.
const RELEASE: &str = r#"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;
/// Heartbeat: this holder is alive now; holders silent for an hour are forgotten.
const BEAT: &str = r#"
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - 3600000)
return 0
"#;
static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
static BEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(BEAT));

/// The user's sockets reached the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub limit: u32,
}

/// Where the counts live.
#[derive(Debug, Clone)]
pub struct UserSlots {
    pub limit: u32,
    /// This node process (node id and a random part: a restarted node is a new holder).
    pub holder: String,
    /// `<prefix>:user-sockets:`, the users' hashes' prefix.
    pub users: String,
    /// `<prefix>:holders`, the heartbeats.
    pub holders: String,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl UserSlots {
    /// A slot for one more socket of `user` (`Ok(true)`: counted in Redis, give it back
    /// with [`UserSlots::release`]; `Ok(false)`: not counted, Redis did not answer).
    pub async fn take(&self, link: &RedisLink, user: &str) -> Result<bool, Full> {
        let found: redis::RedisResult<i64> = ADMIT_SCRIPT
            .key(format!("{}{user}", self.users))
            .key(&self.holders)
            .arg(&self.holder)
            .arg(self.limit)
            .arg(millis(HOLDER_TIMEOUT))
            .arg(IDLE_TTL.as_secs())
            .invoke_async(&mut link.connection())
            .await;
        match found {
            Ok(n) if n > 0 => Ok(true),
            Ok(_) => Err(Full { limit: self.limit }),
            Err(e) => {
                tracing::warn!(error = %e, "per-user connection limit not checked: redis did not answer");
                Ok(false)
            }
        }
    }

    pub async fn release(&self, link: &RedisLink, user: &str) {
        let done: redis::RedisResult<i64> = RELEASE_SCRIPT
            .key(format!("{}{user}", self.users))
            .arg(&self.holder)
            .arg(IDLE_TTL.as_secs())
            .invoke_async(&mut link.connection())
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "a per-user connection slot was not given back: it counts until this node stops");
        }
    }

    /// Says this holder is alive every [`HEARTBEAT`] until `stop`.
    pub async fn beat(self, link: RedisLink, stop: CancellationToken) {
        loop {
            let beat: redis::RedisResult<i64> = BEAT_SCRIPT
                .key(&self.holders)
                .arg(&self.holder)
                .invoke_async(&mut link.connection())
                .await;
            if let Err(e) = beat {
                tracing::warn!(error = %e, "per-user connection limit: heartbeat not written");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
    }
}

/// Without Redis: whether this node's own sockets of `user` leave room for one more.
pub fn local_room(sockets: &dyn NodeSockets, user: &str, limit: u32) -> Result<(), Full> {
    let (count, _) = sockets.room_members(&user_room(user));
    if count >= usize::try_from(limit).unwrap_or(usize::MAX) {
        Err(Full { limit })
    } else {
        Ok(())
    }
}
