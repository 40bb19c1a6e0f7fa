//! Engine.IO 4 / socket.io v5 text packets, as far as a push client needs them.
//!
//! Pure encode/decode so the wire format is table-tested apart from sockets.
//! Engine.IO packet types: `0` open, `1` close, `2` ping, `3` pong, `4` message,
//! `6` noop. Inside a message, socket.io packet types: `0` connect,
//! `1` disconnect, `2` event, `3` ack, `4` connect error. Long-polling
//! payloads join several packets with the record separator `\x1e`.

use serde::Deserialize;

/// Separator between packets in one long-polling payload.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// Engine.IO pong, answered to every ping.
pub const PONG: &str = "3";

/// socket.io connect to the default namespace.
pub const CONNECT_DEFAULT_NAMESPACE: &str = "40";

/// The timestamp every benchmark publish carries in its `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Stamp {
    /// Publish time, nanoseconds since the Unix epoch (same host clock).
    pub ts: u64,
    /// Benchmark step the publish belongs to.
    pub step: u32,
}

/// What one inbound packet means to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Engine.IO open: the session id.
    Open {
        sid: &'a str,
    },
    Ping,
    Close,
    Noop,
    /// socket.io connect accepted.
    Connected,
    /// socket.io connect refused, with the server's reason.
    ConnectError(&'a str),
    /// Acknowledgement of our emit with this id.
    Ack(u64),
    /// An event; `stamp` is set when it is a benchmark publish.
    Event {
        name: &'a str,
        stamp: Option<Stamp>,
    },
    /// socket.io disconnect from the server.
    Disconnected,
    /// Anything else (upgrade probes, binary placeholders): ignored.
    Other,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("open packet without a session id: {0}")]
    OpenWithoutSid(String),
    #[error("event packet is not a JSON array: {0}")]
    BadEvent(String),
}

#[derive(Deserialize)]
struct OpenPayload<'a> {
    #[serde(borrow)]
    sid: &'a str,
}

/// Decodes one Engine.IO text packet.
pub fn decode(packet: &str) -> Result<Inbound<'_>, DecodeError> {
    let mut chars = packet.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let rest = chars.as_str();
    match kind {
        '0' => serde_json::from_str::<OpenPayload>(rest)
            .map(|open| Inbound::Open { sid: open.sid })
            .map_err(|_| DecodeError::OpenWithoutSid(truncate(packet))),
        '1' => Ok(Inbound::Close),
        '2' => Ok(Inbound::Ping),
        '6' => Ok(Inbound::Noop),
        '4' => decode_socketio(rest),
        _ => Ok(Inbound::Other),
    }
}

fn decode_socketio(packet: &str) -> Result<Inbound<'_>, DecodeError> {
    let Some(kind) = packet.chars().next() else {
        return Ok(Inbound::Other);
    };
    let rest = &packet[1..];
    match kind {
        '0' => Ok(Inbound::Connected),
        '1' => Ok(Inbound::Disconnected),
        '4' => Ok(Inbound::ConnectError(rest)),
        '3' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            Ok(rest[..digits]
                .parse()
                .map(Inbound::Ack)
                .unwrap_or(Inbound::Other))
        }
        '2' => decode_event(rest),
        _ => Ok(Inbound::Other),
    }
}

fn decode_event(packet: &str) -> Result<Inbound<'_>, DecodeError> {
    // An event from the server has no namespace prefix for "/" and no ack id here;
    // skip an ack id if one is there.
    let body = packet.trim_start_matches(|c: char| c.is_ascii_digit());
    // Data that is not a stamp still counts as an event, without a latency.
    if let Ok(event) = serde_json::from_str::<EventArray<Stamp>>(body) {
        return Ok(Inbound::Event {
            name: event.name,
            stamp: event.first,
        });
    }
    serde_json::from_str::<EventArray<serde::de::IgnoredAny>>(body)
        .map(|event| Inbound::Event {
            name: event.name,
            stamp: None,
        })
        .map_err(|_| DecodeError::BadEvent(truncate(packet)))
}

/// An event's JSON array `["name", first, ...]`: its name and its first argument, if
/// any, as a `T`. Later arguments are skipped: a server keeping history (connection
/// state recovery) appends the event's offset, e.g. `["bench",{...},"1795983195025-0"]`.
struct EventArray<'a, T> {
    name: &'a str,
    first: Option<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for EventArray<'de, T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = EventArray<'de, T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event array [name, arguments...]")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let name = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let first = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(EventArray { name, first })
            }
        }
        deserializer.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `42<ack>["<event>",{"rooms":[...]}]`: join rooms and ask for an ack.
pub fn subscribe_packet(event: &str, ack_id: u64, rooms: &[String]) -> String {
    let body = serde_json::json!([event, { "rooms": rooms }]);
    format!("42{ack_id}{body}")
}

/// Splits a long-polling payload into its packets.
pub fn split_payload(payload: &str) -> impl Iterator<Item = &str> {
    payload.split(RECORD_SEPARATOR).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        let cases: &[(&str, &str, Result<Inbound<'static>, DecodeError>)] = &[
            (
                "open with sid",
                r#"0{"sid":"abc","upgrades":[],"pingInterval":25000}"#,
                Ok(Inbound::Open { sid: "abc" }),
            ),
            (
                "open without sid is an error",
                r#"0{"pingInterval":1}"#,
                Err(DecodeError::OpenWithoutSid(r#"0{"pingInterval":1}"#.into())),
            ),
            ("ping", "2", Ok(Inbound::Ping)),
            ("close", "1", Ok(Inbound::Close)),
            ("noop", "6", Ok(Inbound::Noop)),
            (
                "namespace connect",
                r#"40{"sid":"x"}"#,
                Ok(Inbound::Connected),
            ),
            (
                "connect error",
                r#"44{"message":"no"}"#,
                Ok(Inbound::ConnectError(r#"{"message":"no"}"#)),
            ),
            ("ack", r#"4312[{"rooms":["a"]}]"#, Ok(Inbound::Ack(12))),
            ("ack without id is ignored", "43[]", Ok(Inbound::Other)),
            ("server disconnect", "41", Ok(Inbound::Disconnected)),
            (
                "stamped event",
                r#"42["bench",{"ts":17,"step":2}]"#,
                Ok(Inbound::Event {
                    name: "bench",
                    stamp: Some(Stamp { ts: 17, step: 2 }),
                }),
            ),
            (
                "stamped event with a trailing offset (history on)",
                r#"42["bench",{"ts":17,"step":2},"1795983195025-0"]"#,
                Ok(Inbound::Event {
                    name: "bench",
                    stamp: Some(Stamp { ts: 17, step: 2 }),
                }),
            ),
            (
                "other data with a trailing offset",
                r#"42["news",{"a":1},"1-0"]"#,
                Ok(Inbound::Event {
                    name: "news",
                    stamp: None,
                }),
            ),
            (
                "null data has no stamp",
                r#"42["news",null]"#,
                Ok(Inbound::Event {
                    name: "news",
                    stamp: None,
                }),
            ),
            (
                "event with other data has no stamp",
                r#"42["news",{"a":1}]"#,
                Ok(Inbound::Event {
                    name: "news",
                    stamp: None,
                }),
            ),
            (
                "event without data",
                r#"42["news"]"#,
                Ok(Inbound::Event {
                    name: "news",
                    stamp: None,
                }),
            ),
            (
                "malformed event is an error",
                "42{oops",
                Err(DecodeError::BadEvent("{oops".into())),
            ),
            (
                "event without a name is an error",
                "42[]",
                Err(DecodeError::BadEvent("[]".into())),
            ),
            ("empty packet is an error", "", Err(DecodeError::Empty)),
            ("upgrade probe ignored", "5", Ok(Inbound::Other)),
        ];
        for (name, input, want) in cases {
            assert_eq!(&decode(input), want, "case {name}");
        }
    }

    #[test]
    fn subscribe_packet_carries_ack_id_and_rooms() {
        assert_eq!(
            subscribe_packet("subscribe", 7, &["room-1".to_string()]),
            r#"427["subscribe",{"rooms":["room-1"]}]"#
        );
    }

    #[test]
    fn split_payload_skips_empty_records() {
        let got: Vec<_> = split_payload("2\u{1e}42[\"a\"]\u{1e}").collect();
        assert_eq!(got, ["2", "42[\"a\"]"]);
    }
}
