//! Client events handed to the application's backend (`PUSH_BACKEND_*`): for each event
//! named in `PUSH_BACKEND_EVENTS`, the node POSTs `{user, sid, event, data, id}` to
//! `PUSH_BACKEND_URL`, signed with HMAC-SHA256 (`X-Pushcluster-Signature`), and the
//! backend's answer becomes the client's ack (`socket::backend_event`).
//!
//! Bounded on every side: one request per event, retried once only for events declared
//! idempotent (the backend sees the same `id` twice and may deduplicate); the whole
//! round trip within the timeout; at most `max_in_flight` requests per node and
//! [`MAX_IN_FLIGHT_PER_SOCKET`] per socket (beyond, an error ack at once, so a slow
//! backend cannot pile work up on the pods); answers no larger than the payload limit.

use std::{
    collections::HashSet,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use push_contract::env;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::ConfigError, metrics::BackendResult};

/// The signature header: `t=<unix seconds>,v1=<hex of HMAC-SHA256(key, "<t>.<body>")>`
/// (the timestamp is signed too, so a backend can refuse replays of old requests).
pub const SIGNATURE_HEADER: &str = "x-pushcluster-signature";
/// Backend requests one socket may have in flight: one client cannot take the node's.
pub const MAX_IN_FLIGHT_PER_SOCKET: usize = 4;
/// Publishes one answer may ask for.
pub const MAX_PUBLISHES_PER_ANSWER: usize = 16;
/// The longest timeout accepted: a client waiting longer for an ack has given up.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// How much of a refusing backend's body the client's error quotes.
const QUOTED_BODY_CHARS: usize = 200;
/// Pause before the one retry of an idempotent event (a backend restarting, a 503).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Event names the node handles itself (socket.io's reserved ones aside): never the
/// backend's.
const HANDLED_BY_THE_NODE: &[&str] = &[
    push_contract::socket::SUBSCRIBE,
    push_contract::socket::UNSUBSCRIBE,
    push_contract::socket::PUBLISH,
    push_contract::socket::REFRESH_TOKEN,
    push_contract::socket::PRESENCE,
];

/// The backend a node hands client events to: where, how it signs, which events, and
/// its in-flight bound (shared by the node's sockets).
#[derive(Clone)]
pub struct Backend {
    url: reqwest::Url,
    secret: Arc<[u8]>,
    events: Vec<String>,
    idempotent: HashSet<String>,
    timeout: Duration,
    max_in_flight: usize,
    in_flight: Arc<Semaphore>,
    client: reqwest::Client,
}

impl Backend {
    /// Validates the settings; `None` when no backend is configured.
    pub fn from_settings(
        url: Option<String>,
        secret: Option<String>,
        events: Vec<String>,
        idempotent: Vec<String>,
        timeout_ms: u64,
        max_in_flight: usize,
    ) -> Result<Option<Self>, ConfigError> {
        let events: Vec<String> = events
            .into_iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let idempotent: Vec<String> = idempotent
            .into_iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
            return match (events.is_empty(), secret.is_some()) {
                (false, _) => Err(ConfigError::Requires(env::BACKEND_EVENTS, env::BACKEND_URL)),
                (_, true) => Err(ConfigError::Requires(env::BACKEND_SECRET, env::BACKEND_URL)),
                _ if !idempotent.is_empty() => Err(ConfigError::Requires(
                    env::BACKEND_IDEMPOTENT_EVENTS,
                    env::BACKEND_URL,
                )),
                _ => Ok(None),
            };
        };
        let invalid = |var, reason: String| ConfigError::Invalid { var, reason };
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| invalid(env::BACKEND_URL, format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                env::BACKEND_URL,
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        let secret = match secret {
            None => return Err(ConfigError::Requires(env::BACKEND_URL, env::BACKEND_SECRET)),
            Some(s) if s.is_empty() => return Err(ConfigError::Empty(env::BACKEND_SECRET)),
            Some(s) => Arc::<[u8]>::from(s.into_bytes()),
        };
        if events.is_empty() {
            return Err(ConfigError::Requires(env::BACKEND_URL, env::BACKEND_EVENTS));
        }
        let mut seen = HashSet::new();
        for event in &events {
            if HANDLED_BY_THE_NODE.contains(&event.as_str())
                || crate::publish::RESERVED_EVENTS.contains(&event.as_str())
            {
                return Err(invalid(
                    env::BACKEND_EVENTS,
                    format!("{event:?} is handled by the node itself or reserved by socket.io"),
                ));
            }
            if !seen.insert(event.as_str()) {
                return Err(invalid(
                    env::BACKEND_EVENTS,
                    format!("{event:?} is named twice"),
                ));
            }
        }
        if let Some(stray) = idempotent.iter().find(|e| !seen.contains(e.as_str())) {
            return Err(invalid(
                env::BACKEND_IDEMPOTENT_EVENTS,
                format!("{stray:?} is not one of {}", env::BACKEND_EVENTS),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(invalid(
                env::BACKEND_TIMEOUT_MS,
                format!("must be between 1 and {MAX_TIMEOUT_MS} (milliseconds)"),
            ));
        }
        if max_in_flight == 0 {
            return Err(invalid(
                env::BACKEND_MAX_IN_FLIGHT,
                "must be at least 1".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("pushcluster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(env::BACKEND_URL, format!("HTTP client: {e}")))?;
        Ok(Some(Self {
            url,
            secret,
            idempotent: idempotent.into_iter().collect(),
            events,
            timeout: Duration::from_millis(timeout_ms),
            max_in_flight,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            client,
        }))
    }

    /// The client events handed to the backend.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// A place among the node's requests in flight, if one is free.
    pub fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Hands one event to the backend (the caller holds a place from `try_reserve`):
    /// its answer, or why there is none.
    pub async fn call(
        &self,
        event: &EventRequest<'_>,
        max_answer: usize,
    ) -> Result<Answer, CallError> {
        let body = serde_json::to_vec(event).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let attempts = if self.idempotent.contains(event.event) {
            2
        } else {
            1
        };
        let round_trip = async {
            let mut attempt = 1;
            loop {
                match self.attempt(&body, max_answer).await {
                    Err(e) if e.may_not_have_arrived() && attempt < attempts => {
                        tracing::debug!(id = event.id, error = %e, "backend event: retrying once");
                        attempt += 1;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    done => return done,
                }
            }
        };
        tokio::time::timeout(self.timeout, round_trip)
            .await
            .unwrap_or(Err(CallError::Timeout(self.timeout)))
    }

    async fn attempt(&self, body: &[u8], max_answer: usize) -> Result<Answer, CallError> {
        let signature = sign(&self.secret, unix_seconds(), body);
        let mut response = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| CallError::Unavailable(without_url(&e)))?;
        let status = response.status();
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Unavailable(without_url(&e)))?
        {
            if answer.len() + chunk.len() > max_answer {
                return Err(CallError::BadAnswer(format!(
                    "larger than {max_answer} bytes"
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        if status.is_server_error() {
            return Err(CallError::ServerError(status.as_u16()));
        }
        if status.is_client_error() {
            return Err(CallError::Refused {
                status: status.as_u16(),
                message: refusal_message(&answer),
            });
        }
        if !status.is_success() {
            return Err(CallError::BadAnswer(format!("HTTP {status}")));
        }
        parse_answer(&answer)
    }
}

/// Settings as printed at start (the key never).
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "url={} events={} idempotent={} timeout_ms={} max_in_flight={} secret=set",
            self.url,
            self.events.join(","),
            self.idempotent.len(),
            self.timeout.as_millis(),
            self.max_in_flight
        )
    }
}

/// What the backend receives for one event.
#[derive(Debug, Serialize)]
pub struct EventRequest<'a> {
    /// The socket's user (JWT `sub`, session user); `null` when anonymous.
    pub user: Option<&'a str>,
    pub sid: &'a str,
    pub event: &'a str,
    pub data: &'a Value,
    /// Unique per event, the same on the retry of an idempotent one.
    pub id: &'a str,
}

/// The backend's answer (a 2xx with a JSON object; every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Handed to the client in its ack as `result`.
    #[serde(default)]
    pub result: Value,
    /// Rooms this socket joins (as a `subscribe` would: within its token's rooms).
    #[serde(default)]
    pub join: Vec<String>,
    /// Rooms this socket leaves (as an `unsubscribe` would).
    #[serde(default)]
    pub leave: Vec<String>,
    /// Messages to publish, as the publish API would (no `publish` claim needed: the
    /// backend is trusted).
    #[serde(default)]
    pub publish: Vec<AnswerPublish>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerPublish {
    pub room: String,
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// Why an event has no answer; the text is what the client's error ack says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("backend busy: too many events in flight; retry later")]
    Busy,
    #[error("backend did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend failed: HTTP {0}")]
    ServerError(u16),
    #[error("backend refused (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("backend answer not understood: {0}")]
    BadAnswer(String),
}

impl CallError {
    /// How it counts.
    pub fn result(&self) -> BackendResult {
        match self {
            Self::Busy => BackendResult::busy,
            Self::Timeout(_) => BackendResult::timeout,
            Self::Refused { .. } => BackendResult::refused,
            Self::Unavailable(_) | Self::ServerError(_) | Self::BadAnswer(_) => {
                BackendResult::failed
            }
        }
    }

    /// Whether the backend may not have acted on it: only then is a retry safe-ish
    /// (and only for an idempotent event). A 500 or a refusal did reach it.
    fn may_not_have_arrived(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::ServerError(502..=504))
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub fn sign(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; kept total rather than unwrapped.
        Err(_) => return String::new(),
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A 2xx's body: the documented object, or nothing at all (a 204: no result).
fn parse_answer(body: &[u8]) -> Result<Answer, CallError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer::default());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => {
            serde_json::from_value(value).map_err(|e| CallError::BadAnswer(e.to_string()))
        }
        Ok(_) => Err(CallError::BadAnswer("not a JSON object".into())),
        Err(e) => Err(CallError::BadAnswer(e.to_string())),
    }
}

/// A refusal's reason for the client: the answer's `error` when it is JSON with one,
/// else the start of its body.
fn refusal_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: String,
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(r) => r.error.chars().take(QUOTED_BODY_CHARS).collect(),
        Err(_) => String::from_utf8_lossy(body)
            .chars()
            .take(QUOTED_BODY_CHARS)
            .collect(),
    }
}

/// A transport error without the URL (the client should not learn the backend's address).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        url: Option<&str>,
        secret: Option<&str>,
        events: &[&str],
        idempotent: &[&str],
    ) -> Result<Option<Backend>, ConfigError> {
        Backend::from_settings(
            url.map(str::to_owned),
            secret.map(str::to_owned),
            events.iter().map(|e| e.to_string()).collect(),
            idempotent.iter().map(|e| e.to_string()).collect(),
            5_000,
            64,
        )
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        // python3: hmac.new(b"key", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        let signed = sign(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            signed,
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert_ne!(signed, sign(b"key", 1_700_000_001, br#"{"a":1}"#));
        assert_ne!(signed, sign(b"key", 1_700_000_000, br#"{"a":2}"#));
        assert_ne!(signed, sign(b"other", 1_700_000_000, br#"{"a":1}"#));
    }

    #[test]
    fn settings_are_all_or_nothing_and_name_the_variable_to_fix() {
        assert!(matches!(settings(None, None, &[], &[]), Ok(None)));
        let ok = settings(
            Some("http://orders:8080/events"),
            Some("k"),
            &["order", "peek"],
            &["peek"],
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(ok.events(), ["order", "peek"]);
        let refused = [
            (settings(None, None, &["order"], &[]), env::BACKEND_EVENTS),
            (settings(None, Some("k"), &[], &[]), env::BACKEND_SECRET),
            (
                settings(Some("http://b"), None, &["order"], &[]),
                env::BACKEND_SECRET,
            ),
            (
                settings(Some("http://b"), Some(""), &["order"], &[]),
                env::BACKEND_SECRET,
            ),
            (
                settings(Some("http://b"), Some("k"), &[], &[]),
                env::BACKEND_EVENTS,
            ),
            (
                settings(Some("ftp://b"), Some("k"), &["order"], &[]),
                env::BACKEND_URL,
            ),
            (
                settings(Some("not a url"), Some("k"), &["order"], &[]),
                env::BACKEND_URL,
            ),
            (
                settings(Some("http://b"), Some("k"), &["subscribe"], &[]),
                env::BACKEND_EVENTS,
            ),
            (
                settings(Some("http://b"), Some("k"), &["disconnect"], &[]),
                env::BACKEND_EVENTS,
            ),
            (
                settings(Some("http://b"), Some("k"), &["a", "a"], &[]),
                env::BACKEND_EVENTS,
            ),
            (
                settings(Some("http://b"), Some("k"), &["a"], &["b"]),
                env::BACKEND_IDEMPOTENT_EVENTS,
            ),
        ];
        for (got, var) in refused {
            let message = got.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(var), "{var}: {message:?}");
        }
        for (timeout, in_flight, var) in [
            (0, 64, env::BACKEND_TIMEOUT_MS),
            (MAX_TIMEOUT_MS + 1, 64, env::BACKEND_TIMEOUT_MS),
            (5_000, 0, env::BACKEND_MAX_IN_FLIGHT),
        ] {
            let got = Backend::from_settings(
                Some("http://b".into()),
                Some("k".into()),
                vec!["a".into()],
                vec![],
                timeout,
                in_flight,
            );
            let message = got.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(var), "{var}: {message:?}");
        }
    }

    #[test]
    fn answers_are_read_strictly_and_refusals_quote_the_backend() {
        let answer = parse_answer(
            br#"{"result": {"ok": true}, "join": ["a"], "publish": [{"room": "a", "event": "e", "data": 1}]}"#,
        )
        .expect("documented answer");
        assert_eq!(answer.result, serde_json::json!({"ok": true}));
        assert_eq!(answer.join, ["a"]);
        assert!(answer.leave.is_empty());
        assert_eq!(answer.publish.len(), 1);
        assert!(
            parse_answer(br#"{"resutl": 1}"#).is_err(),
            "a typo is an error"
        );
        assert!(parse_answer(b"[1]").is_err());
        assert!(parse_answer(b"not json").is_err());
        assert_eq!(parse_answer(b"").map(|a| a.result), Ok(Value::Null), "204");
        assert_eq!(
            refusal_message(br#"{"error": "out of stock"}"#),
            "out of stock"
        );
        assert_eq!(refusal_message(b"plain"), "plain");
        assert_eq!(refusal_message(&[b'x'; 1000]).len(), QUOTED_BODY_CHARS);
    }

    #[test]
    fn only_failures_that_may_not_have_reached_the_backend_are_retried() {
        assert!(CallError::Unavailable("cannot connect".into()).may_not_have_arrived());
        assert!(CallError::ServerError(503).may_not_have_arrived());
        assert!(!CallError::ServerError(500).may_not_have_arrived());
        assert!(
            !CallError::Refused {
                status: 409,
                message: String::new()
            }
            .may_not_have_arrived()
        );
        assert!(!CallError::Timeout(Duration::from_secs(1)).may_not_have_arrived());
    }
}
