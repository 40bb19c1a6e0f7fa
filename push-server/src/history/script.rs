//! The two Lua scripts history runs in Redis. A script runs atomically: an append
//! cannot reach the log without its history stream (or the reverse), and a recovery
//! read sees every stream and the log's end at one instant.

use std::sync::LazyLock;

use redis::{FromRedisValue, Script, Value, aio::ConnectionManager};

use super::{Budget, HistoryConfig, LOG_MAX_LEN, Offset, StreamKeys};

/// Appends one message: to the log (which gives it its id) and, with history on, to its
/// history stream under the same id, then trims that stream to its bounds (age, then
/// length), recording the newest id trimmed (Redis 7.0's `max-deleted-entry-id` does
/// not count trimming). Returns the id and the history stream's length (0: none).
const APPEND: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
if KEYS[2] then
  local ok = redis.pcall('XADD', KEYS[2], id, 'm', ARGV[1])
  if type(ok) == 'table' and ok.err then
    redis.call('XDEL', KEYS[1], id)
    return ok
  end
  local cut = nil
  local floor = tonumber(string.match(id, '^(%d+)-')) - tonumber(ARGV[4])
  if floor > 0 then
    local older = redis.call('XREVRANGE', KEYS[2], '(' .. floor .. '-0', '-', 'COUNT', 1)
    if older[1] then
      cut = older[1][1]
      redis.call('XTRIM', KEYS[2], 'MINID', floor .. '-0')
    end
  end
  local excess = redis.call('XLEN', KEYS[2]) - tonumber(ARGV[3])
  if excess > 0 then
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', excess)
    cut = oldest[#oldest][1]
    redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[3])
  end
  if cut then
    redis.call('SET', KEYS[3], cut)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return { id, redis.call('XLEN', KEYS[2]) }
end
return { id, 0 }
"#;

/// For each history stream (KEYS: stream, its trimmed-id key): whether it exists, the
/// newest id trimmed from it, and its entries after the given id (ARGV[4..]); plus the
/// server's clock and the log's last id. Entries are read up to a budget of messages
/// (ARGV[2]) and bytes (ARGV[3]) over all streams; a stream past it answers `{2}`.
const READ: &str = r#"
local now = redis.call('TIME')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = { now[1] * 1000 + math.floor(now[2] / 1000), last[1] and last[1][1] or '0-0' }
local messages, bytes = 0, 0
for i = 2, #KEYS, 2 do
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 0 then
    out[#out + 1] = { 0 }
  else
    local trimmed = redis.call('GET', KEYS[i + 1]) or '0-0'
    local entries = redis.call('XRANGE', key, '(' .. ARGV[i / 2 + 3], '+', 'COUNT', ARGV[1])
    local size = 0
    for _, entry in ipairs(entries) do size = size + #entry[2][2] end
    if messages + #entries > tonumber(ARGV[2]) or bytes + size > tonumber(ARGV[3]) then
      out[#out + 1] = { 2 }
    else
      messages, bytes = messages + #entries, bytes + size
      out[#out + 1] = { 1, trimmed, entries }
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
    /// The history stream's length after the append (`None`: history off).
    pub history_length: Option<u64>,
}

/// Appends `wire` (the message's channel form) to `log` and, if given, to `stream`.
pub async fn append(
    conn: &mut ConnectionManager,
    log: &str,
    stream: Option<(&StreamKeys, &HistoryConfig)>,
    wire: &[u8],
) -> redis::RedisResult<Appended> {
    let mut invocation = APPEND_SCRIPT.key(log);
    invocation.arg(wire).arg(LOG_MAX_LEN);
    if let Some((keys, history)) = stream {
        invocation
            .key(&keys.stream)
            .key(&keys.trimmed)
            .arg(history.max_messages)
            .arg(history.ttl_ms());
    }
    let (id, length): (String, u64) = invocation.invoke_async(conn).await?;
    let offset = id.parse().map_err(|e: super::offset::BadOffset| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "bad stream id",
            e.to_string(),
        ))
    })?;
    Ok(Appended {
        offset,
        history_length: stream.map(|_| length),
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
        /// Entries after the asked id, oldest first: (id, channel form).
        entries: Vec<(Offset, Vec<u8>)>,
    },
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

/// Reads `streams` (keys, after-id) and the log's end atomically; at most `limit`
/// entries per stream, and what fits in `budget` over all.
pub async fn read(
    conn: &mut ConnectionManager,
    log: &str,
    streams: &[(StreamKeys, Offset)],
    limit: u32,
    budget: Budget,
) -> redis::RedisResult<Snapshot> {
    let mut invocation = READ_SCRIPT.key(log);
    invocation.arg(limit).arg(budget.messages).arg(budget.bytes);
    for (keys, after) in streams {
        invocation
            .key(&keys.stream)
            .key(&keys.trimmed)
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

/// One stream entry `[id, [field, value]]` as (offset, the value of its one field `m`,
/// the message's channel form); `None` when it has another shape.
pub fn entry(value: Value) -> Option<(Offset, Vec<u8>)> {
    let (id, fields): (String, Vec<Vec<u8>>) = FromRedisValue::from_redis_value(value).ok()?;
    Some((id.parse().ok()?, fields.into_iter().nth(1)?))
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
        let raw =
            Vec::<Value>::from_redis_value(parts.next().ok_or_else(|| malformed("entries"))?)?;
        let entries = raw
            .into_iter()
            .map(|e| entry(e).ok_or_else(|| malformed("entry")))
            .collect::<redis::RedisResult<_>>()?;
        streams.push(StreamRead::Present { trimmed, entries });
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
