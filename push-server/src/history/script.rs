//! The two Lua scripts history runs in Redis. A script runs atomically: an append
//! cannot reach the log without its history stream (or the reverse), and a recovery
//! read sees every stream and the log's end at one instant.

use std::sync::LazyLock;

use redis::{FromRedisValue, Script, Value, aio::ConnectionManager};

use super::{Budget, HistoryConfig, LOG_MAX_LEN, Offset, StreamKeys};

/// Appends one message: to the log (which gives it its id; the entry also names the
/// log's previous id, `p`, so a reader can tell it missed entries trimmed meanwhile)
/// and, with history on, to its history stream under the same id, then trims that
/// stream to its bounds (age, then length), recording the newest id trimmed (Redis
/// 7.0's `max-deleted-entry-id` does not count trimming) and, when the append created
/// the stream, its first id. Returns the id and the history stream's length (0: none;
/// -1: a repeat of an idempotency key, the id is the first append's).
///
/// KEYS: log, lease, taken, idempotency key, [stream, trimmed, created].
/// ARGV: message, log length, lease holder, digest, taken kept, idempotency ttl ms,
/// max messages, ttl ms (both unused without a stream), room channel.
/// - With a room channel (interest-based delivery, `publish::interest`), the appended
///   message is also published there as `<id> <message>`, last, once nothing can undo
///   the append: the nodes holding that room's members receive it in append order.
/// - With a lease holder (the Redis channel's input) the append happens only while that
///   holder holds the lease (else the error `NOTHOLDER`: two nodes that both think they
///   hold it never append a message twice), and the message's digest joins the list of
///   the last ones taken, from which the next holder knows where to go on.
/// - With an idempotency ttl, a key seen within it answers the first append's id and
///   appends nothing; its expiry is renewed (a write: a `WAIT` after it covers the first
///   append too).
/// - The newest id older than the age bound is looked for only when the oldest entry is
///   older: `XREVRANGE` from an id below every entry starts at the stream's end and walks
///   all of it (measured on redis-server 7.0: 5.5 / 16.5 / 61 µs at 100 / 300 / 1,000
///   entries; the oldest entry: 0.5 µs at any length), so a room whose history was full
///   made every append cost in proportion to it.
const APPEND: &str = r#"
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return redis.error_reply('NOTHOLDER the publish channel lease is held by another node')
end
if ARGV[6] ~= '0' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    redis.call('PEXPIRE', KEYS[4], ARGV[6])
    return { seen, -1 }
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = last[1] and last[1][1] or '0-0'
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1], 'p', prev)
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[4])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
if ARGV[6] ~= '0' then
  redis.call('SET', KEYS[4], id, 'PX', ARGV[6])
end
local length = 0
if KEYS[5] then
  local created = redis.call('EXISTS', KEYS[5]) == 0
  local ok = redis.pcall('XADD', KEYS[5], id, 'm', ARGV[1])
  if type(ok) == 'table' and ok.err then
    redis.call('XDEL', KEYS[1], id)
    if ARGV[6] ~= '0' then redis.call('DEL', KEYS[4]) end
    return ok
  end
  if created then
    redis.call('SET', KEYS[7], id)
  end
  local cut = nil
  local floor = tonumber(string.match(id, '^(%d+)-')) - tonumber(ARGV[8])
  if floor > 0 then
    local oldest = redis.call('XRANGE', KEYS[5], '-', '+', 'COUNT', 1)
    if oldest[1] and tonumber(string.match(oldest[1][1], '^(%d+)-')) < floor then
      cut = redis.call('XREVRANGE', KEYS[5], '(' .. floor .. '-0', '-', 'COUNT', 1)[1][1]
      redis.call('XTRIM', KEYS[5], 'MINID', floor .. '-0')
    end
  end
  local excess = redis.call('XLEN', KEYS[5]) - tonumber(ARGV[7])
  if excess > 0 then
    local oldest = redis.call('XRANGE', KEYS[5], '-', '+', 'COUNT', excess)
    cut = oldest[#oldest][1]
    redis.call('XTRIM', KEYS[5], 'MAXLEN', ARGV[7])
  end
  if cut then
    redis.call('SET', KEYS[6], cut)
  end
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
  redis.call('PEXPIRE', KEYS[6], ARGV[8])
  redis.call('PEXPIRE', KEYS[7], ARGV[8])
  length = redis.call('XLEN', KEYS[5])
end
if ARGV[9] and ARGV[9] ~= '' then
  redis.call('PUBLISH', ARGV[9], id .. ' ' .. ARGV[1])
end
return { id, length }
"#;

/// For each history stream (KEYS after the log: stream, its trimmed-id key, its
/// created-id key): whether it exists, the newest id trimmed from it, the id that
/// created it, and its entries after the given id (ARGV[3..]); plus the server's clock
/// and the log's last id. Reads within a budget of messages (ARGV[1]) and bytes
/// (ARGV[2]) over all streams, asking Redis for no more than fits: the first stream
/// past it answers `{2}`, and so does every stream after it, unread — a recovery costs
/// Redis at most its budget, however many rooms and however long their histories.
const READ: &str = r#"
local now = redis.call('TIME')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = { now[1] * 1000 + math.floor(now[2] / 1000), last[1] and last[1][1] or '0-0' }
local messages, bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
for s = 1, (#KEYS - 1) / 3 do
  local key = KEYS[3 * s - 1]
  if messages < 0 then
    out[#out + 1] = { 2 }
  elseif redis.call('EXISTS', key) == 0 then
    out[#out + 1] = { 0 }
  else
    local trimmed = redis.call('GET', KEYS[3 * s]) or '0-0'
    local created = redis.call('GET', KEYS[3 * s + 1]) or '0-0'
    local entries = redis.call('XRANGE', key, '(' .. ARGV[s + 2], '+', 'COUNT', messages + 1)
    local size = 0
    for _, entry in ipairs(entries) do size = size + #entry[2][2] end
    if #entries > messages or size > bytes then
      messages = -1
      out[#out + 1] = { 2 }
    else
      messages, bytes = messages - #entries, bytes - size
      out[#out + 1] = { 1, trimmed, created, entries }
    end
  end
end
return out
"#;

/// The scripts, hashed once (sent by hash; by body only when Redis does not know it).
static APPEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPEND));
static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub offset: Offset,
    /// The history stream's length after the append (`None`: history off, or a repeat).
    pub history_length: Option<u64>,
    /// A repeat of an idempotency key: nothing was appended, `offset` is the first's.
    pub repeat: bool,
}

/// Where an append goes: the log, the history stream (with its bounds, when on) and the
/// room's pub/sub channel (`Keys::room_channel`: every append, whatever the node's mode).
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub log: &'a str,
    pub stream: Option<(&'a StreamKeys, &'a HistoryConfig)>,
    pub room_channel: &'a str,
}

/// The publish channel's lease, whose holder alone appends what backends PUBLISH.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    /// The lease key and this node's holder name.
    pub lease: &'a str,
    pub holder: &'a str,
    /// The list of the last digests taken, and this message's digest.
    pub taken: &'a str,
    pub digest: &'a str,
}

/// Digests of the last channel messages taken (see [`Fence`]): enough to find one's
/// place in a buffer holding repeats.
pub const TAKEN_KEPT: usize = 16;

/// A publisher's key for a message it may send again (a retry after a 503): within
/// `ttl` the same key appends once and answers the first offset.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    /// Its Redis key (`Keys::idempotency`).
    pub key: &'a str,
    pub ttl: std::time::Duration,
}

/// Replicas that must have the append before it counts (Redis `WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// Records `value` at `key` (a write of this connection's own) and waits until `wait`
/// replicas have everything this connection wrote up to it: `WAIT` covers only a
/// connection's own writes, so a reader confirms what it read this way. Returns how
/// many replicas acknowledged.
pub async fn confirm_replicated<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    key: &str,
    value: &str,
    wait: ReplicaWait,
) -> redis::RedisResult<u32> {
    let (_, acked): ((), u32) = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(60_000)
        .cmd("WAIT")
        .arg(wait.replicas)
        .arg(wait.timeout_ms)
        .query_async(conn)
        .await?;
    Ok(acked)
}

/// Why an append did not happen (or is not confirmed).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another node holds the channel lease (see [`Fence`]).
    #[error("the publish channel lease is held by another node")]
    NotHolder,
    /// Appended on the primary, but not on enough replicas in time: a failover now could
    /// lose it (a retry with the same idempotency key is safe).
    #[error("appended, but only {acked} of {wanted} replicas confirmed it in time")]
    NotReplicated { acked: u32, wanted: u32 },
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Appends `wire` (the message's channel form) to `log` and, if given, to `stream`;
/// with a `fence`, only while its holder holds the lease; with `idempotency`, once per
/// key; with `wait`, confirmed only once that many replicas have it; published last on
/// `room_channel`.
pub async fn append(
    conn: &mut ConnectionManager,
    to: Destination<'_>,
    fence: Option<Fence<'_>>,
    idempotency: Option<Idempotency<'_>>,
    wait: Option<ReplicaWait>,
    wire: &[u8],
) -> Result<Appended, AppendError> {
    let Destination {
        log,
        stream,
        room_channel,
    } = to;
    let (lease, holder, taken, digest) =
        fence.map_or(("", "", "", ""), |f| (f.lease, f.holder, f.taken, f.digest));
    // Keys a call does not use: the log's name stands in.
    let or_log = |given: &str| {
        if given.is_empty() {
            log.to_owned()
        } else {
            given.to_owned()
        }
    };
    let (idempotency_key, idempotency_ttl_ms) = idempotency.map_or(("", 0), |i| {
        (
            i.key,
            u64::try_from(i.ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        )
    });
    let mut keys = vec![
        log.to_owned(),
        or_log(lease),
        or_log(taken),
        or_log(idempotency_key),
    ];
    let mut args: Vec<Vec<u8>> = vec![
        wire.to_vec(),
        LOG_MAX_LEN.to_string().into_bytes(),
        holder.as_bytes().to_vec(),
        digest.as_bytes().to_vec(),
        TAKEN_KEPT.to_string().into_bytes(),
        idempotency_ttl_ms.to_string().into_bytes(),
    ];
    match stream {
        Some((stream_keys, history)) => {
            keys.extend([
                stream_keys.stream.clone(),
                stream_keys.trimmed.clone(),
                stream_keys.created.clone(),
            ]);
            args.push(history.max_messages.to_string().into_bytes());
            args.push(history.ttl_ms().to_string().into_bytes());
        }
        None => args.extend([b"0".to_vec(), b"0".to_vec()]),
    }
    args.push(room_channel.as_bytes().to_vec());
    let mut eval = redis::cmd("EVALSHA");
    eval.arg(APPEND_SCRIPT.get_hash())
        .arg(keys.len())
        .arg(&keys)
        .arg(&args);
    let mut pipe = redis::pipe();
    pipe.add_command(eval);
    if let Some(wait) = wait {
        pipe.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
    }
    let reply: Vec<Value> = match pipe.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            APPEND_SCRIPT.load_async(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
    .map_err(|e| {
        if e.code() == Some("NOTHOLDER") {
            AppendError::NotHolder
        } else {
            AppendError::Redis(e)
        }
    })?;
    let mut reply = reply.into_iter();
    let (id, length): (String, i64) =
        FromRedisValue::from_redis_value(reply.next().ok_or_else(|| malformed("append"))?)
            .map_err(redis::RedisError::from)?;
    if let Some(wait) = wait {
        let acked = u32::from_redis_value(reply.next().ok_or_else(|| malformed("wait"))?)
            .map_err(redis::RedisError::from)?;
        if acked < wait.replicas {
            return Err(AppendError::NotReplicated {
                acked,
                wanted: wait.replicas,
            });
        }
    }
    let offset = id.parse().map_err(|e: super::offset::BadOffset| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "bad stream id",
            e.to_string(),
        ))
    })?;
    let repeat = length < 0;
    Ok(Appended {
        offset,
        history_length: stream
            .filter(|_| !repeat)
            .map(|_| u64::try_from(length).unwrap_or(0)),
        repeat,
    })
}

/// One history stream as a recovery read found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRead {
    /// No such key: nothing was appended within the TTL (or Redis lost it).
    Missing,
    /// Its entries would exceed the replay budget: not read.
    OverBudget,
    Present {
        /// The newest id trimmed away (by length or age); `0-0` when none.
        trimmed: Offset,
        /// The id whose append created the stream; `0-0` when unknown (written by a
        /// node that did not record it).
        created: Offset,
        /// Entries after the asked id, oldest first: (id, channel form).
        entries: Vec<(Offset, Vec<u8>)>,
    },
}

impl StreamRead {
    /// The read without its entries after `end` (appended after an earlier read saw
    /// the log's end at `end`).
    pub fn until(self, end: Offset) -> Self {
        match self {
            StreamRead::Present {
                trimmed,
                created,
                mut entries,
            } => {
                entries.retain(|(offset, _)| *offset <= end);
                StreamRead::Present {
                    trimmed,
                    created,
                    entries,
                }
            }
            other => other,
        }
    }
}

/// What one recovery read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Redis's clock, ms since the epoch.
    pub now_ms: u64,
    /// The fan-out log's last id when the streams were read.
    pub log_end: Offset,
    /// One per asked stream, in the asked order.
    pub streams: Vec<StreamRead>,
}

/// Reads `streams` (keys, after-id) and the log's end atomically, what fits in `budget`
/// over all (a stream past it, and every one after it, is [`StreamRead::OverBudget`]).
pub async fn read(
    conn: &mut ConnectionManager,
    log: &str,
    streams: &[(StreamKeys, Offset)],
    budget: Budget,
) -> redis::RedisResult<Snapshot> {
    let mut invocation = READ_SCRIPT.key(log);
    invocation.arg(budget.messages).arg(budget.bytes);
    for (keys, after) in streams {
        invocation
            .key(&keys.stream)
            .key(&keys.trimmed)
            .key(&keys.created)
            .arg(after.to_string());
    }
    let value: Value = invocation.invoke_async(conn).await?;
    parse_snapshot(value, streams.len())
}

fn malformed(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected history read reply",
        what.to_owned(),
    ))
}

fn offset_of(value: Value) -> redis::RedisResult<Offset> {
    let text = String::from_redis_value(value)?;
    text.parse().map_err(|_| malformed("stream id"))
}

/// One stream entry `[id, [m, value, ...]]` as (offset, the value of its first field `m`,
/// the message's channel form); `None` when it has another shape.
pub fn entry(value: Value) -> Option<(Offset, Vec<u8>)> {
    log_entry(value).map(|(offset, message, _)| (offset, message))
}

/// One fan-out log entry `[id, [m, value, p, previous id]]`: (offset, channel form, the
/// log's previous id when the entry names it); `None` when it has another shape.
pub fn log_entry(value: Value) -> Option<(Offset, Vec<u8>, Option<Offset>)> {
    let (id, fields): (String, Vec<Vec<u8>>) = FromRedisValue::from_redis_value(value).ok()?;
    let mut fields = fields.into_iter();
    let message = fields.nth(1)?;
    let previous = match (fields.next(), fields.next()) {
        (Some(name), Some(value)) if name == b"p" => {
            Some(std::str::from_utf8(&value).ok()?.parse().ok()?)
        }
        _ => None,
    };
    Some((id.parse().ok()?, message, previous))
}

/// The reply of [`READ`] as a [`Snapshot`]; a reply of another shape is an error.
fn parse_snapshot(value: Value, expected: usize) -> redis::RedisResult<Snapshot> {
    let mut items = Vec::<Value>::from_redis_value(value)?.into_iter();
    let now_ms = u64::from_redis_value(items.next().ok_or_else(|| malformed("clock"))?)?;
    let log_end = offset_of(items.next().ok_or_else(|| malformed("log end"))?)?;
    let mut streams = Vec::with_capacity(expected);
    for item in items {
        let mut parts = Vec::<Value>::from_redis_value(item)?.into_iter();
        let state = i64::from_redis_value(parts.next().ok_or_else(|| malformed("exists"))?)?;
        match state {
            0 => {
                streams.push(StreamRead::Missing);
                continue;
            }
            2 => {
                streams.push(StreamRead::OverBudget);
                continue;
            }
            _ => {}
        }
        let trimmed = offset_of(parts.next().ok_or_else(|| malformed("trimmed"))?)?;
        let created = offset_of(parts.next().ok_or_else(|| malformed("created"))?)?;
        let raw =
            Vec::<Value>::from_redis_value(parts.next().ok_or_else(|| malformed("entries"))?)?;
        let entries = raw
            .into_iter()
            .map(|e| entry(e).ok_or_else(|| malformed("entry")))
            .collect::<redis::RedisResult<_>>()?;
        streams.push(StreamRead::Present {
            trimmed,
            created,
            entries,
        });
    }
    if streams.len() != expected {
        return Err(malformed("stream count"));
    }
    Ok(Snapshot {
        now_ms,
        log_end,
        streams,
    })
}

/// A position marker: publishes `<log's last id> <seq>` on a node's marker channel, in
/// one step with reading that id. Every append published before it (on any channel the
/// node is subscribed to) reaches the node before the marker, every later one after it:
/// when the marker arrives, the node has received all it will ever receive of its rooms
/// up to that id.
///
/// KEYS: log. ARGV: marker channel, seq.
const MARK: &str = r#"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
return redis.call('PUBLISH', ARGV[1], (last[1] and last[1][1] or '0-0') .. ' ' .. ARGV[2])
"#;

static MARK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(MARK));

/// Sends position marker `seq` to `channel` (see [`MARK`]); returns how many
/// subscribers got it.
pub async fn mark<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    log: &str,
    channel: &str,
    seq: u64,
) -> redis::RedisResult<u64> {
    MARK_SCRIPT
        .key(log)
        .arg(channel)
        .arg(seq)
        .invoke_async(conn)
        .await
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn snapshot_replies_parse_and_odd_ones_are_errors() {
        let reply = Value::Array(vec![
            Value::Int(1_000),
            bulk("900-1"),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Int(2)]),
            Value::Array(vec![
                Value::Int(1),
                bulk("800-0"),
                bulk("700-0"),
                Value::Array(vec![Value::Array(vec![
                    bulk("850-0"),
                    Value::Array(vec![bulk("m"), bulk("{}")]),
                ])]),
            ]),
        ]);
        let snapshot = parse_snapshot(reply, 3).expect("parses");
        assert_eq!(snapshot.now_ms, 1_000);
        assert_eq!(snapshot.log_end, Offset { ms: 900, seq: 1 });
        assert_eq!(snapshot.streams[0], StreamRead::Missing);
        assert_eq!(snapshot.streams[1], StreamRead::OverBudget);
        assert_eq!(
            snapshot.streams[2],
            StreamRead::Present {
                trimmed: Offset { ms: 800, seq: 0 },
                created: Offset { ms: 700, seq: 0 },
                entries: vec![(Offset { ms: 850, seq: 0 }, b"{}".to_vec())],
            }
        );
        let short = Value::Array(vec![Value::Int(1_000), bulk("900-1")]);
        assert!(parse_snapshot(short, 1).is_err(), "a missing stream");
        let bad_id = Value::Array(vec![Value::Int(1_000), bulk("nope")]);
        assert!(parse_snapshot(bad_id, 0).is_err());
        assert!(parse_snapshot(Value::Nil, 0).is_err());
    }
}
