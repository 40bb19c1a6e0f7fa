//! Publishing: one message shape, validated the same way whether it came over HTTP or
//! the Redis channel, and one delivery path (each node writes to its OWN sockets).
//!
//! Exactly-once across the cluster: the HTTP API (or the node holding the channel's
//! lease) does not deliver, it appends to the fan-out log, a Redis stream (`log`) that
//! gives the message its offset; every node reads the log in order and delivers to its
//! own sockets only (`local()`, `fanout`). Using the adapter's cluster broadcast instead
//! would deliver twice to remote sockets and would hide the publish→delivery latency on
//! the receiving nodes; pub/sub instead of a stream would lose what a node missed while
//! its Redis connection was down.

pub mod channel;
pub mod deliver;
pub mod error;
pub mod fanout;
pub mod http;
pub mod interest;
pub mod log;

use std::time::{SystemTime, UNIX_EPOCH};

use push_contract::{PublishRequest, PublishTarget, defaults, socket::user_room};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Events the socket.io protocol reserves; publishing them would confuse clients.
pub(crate) const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];
const MAX_EVENT_LEN: usize = 200;

/// Namespaces a publish may address.
pub const NAMESPACES: &[&str] = &[defaults::NAMESPACE];

/// A message that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: String,
    pub data: Data,
    pub target: PublishTarget,
    pub namespace: String,
    /// Wall clock (µs since the epoch) when the first node accepted it.
    pub origin_us: Option<u64>,
    /// The publisher's key for a message it may send again (see `PublishRequest`).
    pub idempotency_key: Option<String>,
}

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

impl Message {
    /// The socket.io room to write to, `None` for a namespace-wide broadcast.
    pub fn room(&self) -> Option<String> {
        match &self.target {
            PublishTarget::Room(room) => Some(room.clone()),
            PublishTarget::User(user) => Some(user_room(user)),
            PublishTarget::Broadcast => None,
        }
    }
}

/// A message's `data`: the JSON text as the publisher sent it. It is forwarded, never
/// re-serialised: parsing into numbers and writing them back changes the text (`1e15`
/// becomes `1000000000000000.0`) and its size, past the limit it was checked against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Data(Box<RawValue>);

impl Default for Data {
    /// An absent `data` is `null`, as socket.io sends it.
    fn default() -> Self {
        Data(RawValue::NULL.to_owned())
    }
}

impl From<Box<RawValue>> for Data {
    fn from(raw: Box<RawValue>) -> Self {
        Data(raw)
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Bytes the Redis channel's wrapping may add to an accepted API body: the namespace, the
/// origin stamp, and the keys and quotes around them (event and target are capped at
/// 200 bytes each and already in the body). Subscribers accept messages up to the
/// payload limit plus this, so every body the API accepts travels.
pub const ENVELOPE_OVERHEAD: usize = 512;

/// Why a message was refused; the text names the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    #[error("body is not valid JSON in the publish shape: {0}")]
    Json(String),
    #[error("field `event` must be a non-empty string of at most {MAX_EVENT_LEN} bytes")]
    Event,
    #[error("field `event`: {0:?} is reserved by socket.io")]
    ReservedEvent(String),
    #[error("exactly one of `room`, `user` or `broadcast: true` must be given")]
    Target,
    #[error("field `{0}` must be a non-empty string of at most 200 bytes")]
    EmptyTarget(&'static str),
    #[error("field `namespace`: unknown namespace {0:?}")]
    Namespace(String),
    #[error("the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters")]
    IdempotencyKey,
}

/// Whether a publisher's idempotency key is acceptable (it becomes part of a Redis key).
pub fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic())
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Parses and validates a publish body (HTTP or Redis channel).
pub fn parse(body: &[u8], namespaces: &[&str]) -> Result<Message, InvalidMessage> {
    let request: PublishRequest<Data> =
        serde_json::from_slice(body).map_err(|e| InvalidMessage::Json(e.to_string()))?;
    validate(request, namespaces)
}

/// The checks of the publish shape, pure.
pub fn validate(
    request: PublishRequest<Data>,
    namespaces: &[&str],
) -> Result<Message, InvalidMessage> {
    if request.event.is_empty() || request.event.len() > MAX_EVENT_LEN {
        return Err(InvalidMessage::Event);
    }
    if RESERVED_EVENTS.contains(&request.event.as_str()) {
        return Err(InvalidMessage::ReservedEvent(request.event));
    }
    let non_empty = |field, value: String| {
        if value.is_empty() || value.len() > 200 {
            Err(InvalidMessage::EmptyTarget(field))
        } else {
            Ok(value)
        }
    };
    let target = match (request.room, request.user, request.broadcast) {
        (Some(room), None, false) => PublishTarget::Room(non_empty("room", room)?),
        (None, Some(user), false) => PublishTarget::User(non_empty("user", user)?),
        (None, None, true) => PublishTarget::Broadcast,
        _ => return Err(InvalidMessage::Target),
    };
    let namespace = request
        .namespace
        .unwrap_or_else(|| defaults::NAMESPACE.to_owned());
    if !namespaces.contains(&namespace.as_str()) {
        return Err(InvalidMessage::Namespace(namespace));
    }
    if request
        .idempotency_key
        .as_deref()
        .is_some_and(|k| !valid_idempotency_key(k))
    {
        return Err(InvalidMessage::IdempotencyKey);
    }
    Ok(Message {
        event: request.event,
        data: request.data,
        target,
        namespace,
        origin_us: request.origin_us,
        idempotency_key: request.idempotency_key,
    })
}

/// The Redis channel form of a validated message, stamped with `origin_us`.
pub fn envelope(message: &Message, origin_us: u64) -> Vec<u8> {
    let (room, user, broadcast) = match &message.target {
        PublishTarget::Room(r) => (Some(r.clone()), None, false),
        PublishTarget::User(u) => (None, Some(u.clone()), false),
        PublishTarget::Broadcast => (None, None, true),
    };
    let envelope = PublishRequest {
        event: message.event.clone(),
        // Borrowed: the payload is written once, into the wire bytes.
        data: &*message.data.0,
        room,
        user,
        broadcast,
        namespace: Some(message.namespace.clone()),
        origin_us: Some(origin_us),
        // Used at the append, not needed by the nodes that deliver.
        idempotency_key: None,
    };
    // Serializing strings and valid raw JSON into a Vec cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &[&str] = &["/"];

    #[test]
    fn publish_bodies_are_validated() {
        let cases: &[(&str, &str, Result<PublishTarget, &str>)] = &[
            (
                "room",
                r#"{"event":"e","data":1,"room":"r"}"#,
                Ok(PublishTarget::Room("r".into())),
            ),
            (
                "user",
                r#"{"event":"e","user":"u"}"#,
                Ok(PublishTarget::User("u".into())),
            ),
            (
                "broadcast",
                r#"{"event":"e","broadcast":true}"#,
                Ok(PublishTarget::Broadcast),
            ),
            ("not json", "nope", Err("not valid JSON")),
            (
                "missing event",
                r#"{"room":"r"}"#,
                Err("missing field `event`"),
            ),
            (
                "event not a string",
                r#"{"event":5,"room":"r"}"#,
                Err("invalid type"),
            ),
            (
                "empty event",
                r#"{"event":"","room":"r"}"#,
                Err("field `event`"),
            ),
            (
                "reserved event",
                r#"{"event":"disconnect","room":"r"}"#,
                Err("reserved"),
            ),
            ("no target", r#"{"event":"e"}"#, Err("exactly one")),
            (
                "two targets",
                r#"{"event":"e","room":"r","user":"u"}"#,
                Err("exactly one"),
            ),
            (
                "room and broadcast",
                r#"{"event":"e","room":"r","broadcast":true}"#,
                Err("exactly one"),
            ),
            (
                "empty room",
                r#"{"event":"e","room":""}"#,
                Err("field `room`"),
            ),
            (
                "unknown namespace",
                r#"{"event":"e","room":"r","namespace":"/x"}"#,
                Err("unknown namespace"),
            ),
        ];
        for (name, body, want) in cases {
            let got = parse(body.as_bytes(), NS);
            match (got, want) {
                (Ok(message), Ok(target)) => assert_eq!(&message.target, target, "case {name}"),
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "case {name}: {e}")
                }
                (got, want) => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn data_travels_as_received() {
        // Numbers a parse-and-write would rewrite, whitespace, escapes.
        let data = r#"[1e15, 2.50, "\u00e9", {"k" : -0}]"#;
        let body = format!(r#"{{"event":"e","data":{data},"room":"r"}}"#);
        let message = parse(body.as_bytes(), NS).expect("valid");
        let wire = String::from_utf8(envelope(&message, 7)).expect("utf-8");
        assert!(wire.contains(data), "{wire}");
        assert!(wire.len() <= body.len() + ENVELOPE_OVERHEAD, "{wire}");
        let missing = parse(br#"{"event":"e","room":"r"}"#, NS).expect("valid");
        assert!(String::from_utf8_lossy(&envelope(&missing, 7)).contains(r#""data":null"#));
    }

    #[test]
    fn envelope_round_trips_with_the_origin_stamp() {
        let message = parse(br#"{"event":"e","data":{"k":[1,2]},"user":"u7"}"#, NS).expect("valid");
        let wire = envelope(&message, 42);
        let back = parse(&wire, NS).expect("valid");
        assert_eq!(back.origin_us, Some(42));
        assert_eq!(back.room().as_deref(), Some("user:u7"));
        assert_eq!(
            Message {
                origin_us: None,
                ..back
            },
            message
        );
    }

    #[test]
    fn idempotency_keys_are_checked() {
        let keyed = parse(
            br#"{"event":"e","broadcast":true,"idempotency_key":"k-1"}"#,
            NS,
        )
        .expect("valid");
        assert_eq!(keyed.idempotency_key.as_deref(), Some("k-1"));
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        for bad in ["", "a b", "é", long.as_str()] {
            let body = serde_json::json!({"event": "e", "broadcast": true, "idempotency_key": bad});
            assert_eq!(
                parse(body.to_string().as_bytes(), NS),
                Err(InvalidMessage::IdempotencyKey),
                "{bad:?}"
            );
        }
    }
}
