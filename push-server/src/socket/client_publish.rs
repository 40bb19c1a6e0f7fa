//! A client's `publish` event: `{"room", "event", "data"}` with an ack, delivered to the
//! room's members on every node the way the publish API delivers (history, offsets,
//! recovery, payload bound) when the socket's token allows the room (its `publish`
//! claim: room patterns, separate from the `rooms` it may join). The ack is `{"offset"}`
//! (`{"delivered"}` on a single node without Redis) or `{"error"}` saying why; refusals
//! are counted (`push_publish_requests_total{source="client"}`).

use push_contract::PublishRequest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::extensions::{identity_of, within_budget};
use crate::{
    auth::identity::Identity,
    metrics::{Outcome, Source},
    publish::{Data, Message, NAMESPACES, http::Accepted, validate},
    state::SharedState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientPublish {
    room: String,
    event: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// The ack.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(super) struct PublishAck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PublishAck {
    pub(super) fn refused(reason: impl Into<String>) -> Self {
        Self {
            error: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// The message a client's publish makes, or why it may not (the outcome it counts as).
pub(super) fn plan(
    identity: &Identity,
    request: ClientPublish,
    namespace: &str,
    max_payload: usize,
) -> Result<Message, (Outcome, String)> {
    let allowed = identity
        .publish
        .as_ref()
        .is_some_and(|rooms| rooms.decide(&request.room, true).is_ok());
    if !allowed {
        // An anonymous connection (the cluster runs without JWT) has no claim to name it:
        // say so, rather than speak of a token it never had.
        let why = if identity.user.is_none() {
            "publishing needs a token whose `publish` claim names the room, and this connection has none"
        } else {
            "the token's `publish` claim does not name it"
        };
        return Err((
            Outcome::forbidden,
            format!("not allowed to publish to {:?}: {why}", request.room),
        ));
    }
    room_message(
        request.room,
        request.event,
        &request.data,
        namespace,
        max_payload,
    )
}

/// A message to a room (a client's publish once allowed, or a backend's answer), or why
/// it is not one.
pub(super) fn room_message(
    room: String,
    event: String,
    data: &serde_json::Value,
    namespace: &str,
    max_payload: usize,
) -> Result<Message, (Outcome, String)> {
    let text = data.to_string();
    if text.len() > max_payload {
        return Err((
            Outcome::too_large,
            format!("data larger than {max_payload} bytes"),
        ));
    }
    let data = RawValue::from_string(text)
        .map(Data::from)
        .map_err(|e| (Outcome::invalid, format!("data: {e}")))?;
    validate(
        PublishRequest {
            event,
            data,
            room: Some(room),
            user: None,
            broadcast: false,
            namespace: Some(namespace.to_owned()),
            origin_us: None,
            idempotency_key: None,
        },
        NAMESPACES,
    )
    .map_err(|e| (Outcome::invalid, e.to_string()))
}

pub(super) async fn on_publish<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<ClientPublish>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack, || {
        PublishAck::refused("rate limited: too many requests; slow down")
    }) else {
        return;
    };
    let planned = match request {
        Err(e) => Err((
            Outcome::invalid,
            format!("expected {{\"room\", \"event\", \"data\"}}: {e}"),
        )),
        Ok(request) => plan(
            &identity_of(&socket),
            request,
            socket.ns(),
            state.config.max_payload_bytes,
        ),
    };
    let answer = match planned {
        Err((outcome, reason)) => {
            state.metrics.publish(Source::client, outcome);
            PublishAck::refused(reason)
        }
        Ok(message) => hand_over(&state, message, Source::client).await,
    };
    let _ = ack.send(&answer);
}

/// Publishes a planned message; the ack saying how it went (counted as from `source`).
pub(super) async fn hand_over(state: &SharedState, message: Message, source: Source) -> PublishAck {
    match crate::publish::http::hand_over(state, message).await {
        Ok(accepted) => {
            state.metrics.publish(source, Outcome::accepted);
            match accepted {
                Accepted::Cluster { offset } => PublishAck {
                    offset: Some(offset.to_string()),
                    ..PublishAck::default()
                },
                Accepted::SingleNode { delivered } => PublishAck {
                    delivered: Some(delivered),
                    ..PublishAck::default()
                },
            }
        }
        Err(e) => {
            if let Some(outcome) = e.outcome() {
                state.metrics.publish(source, outcome);
            }
            PublishAck::refused(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::RoomPolicy;

    fn identity(publish: Option<&[&str]>) -> Identity {
        Identity {
            user: Some("ann".into()),
            rooms: RoomPolicy::Any,
            publish: publish.map(|p| {
                RoomPolicy::from_claim(Some(p.iter().map(|r| r.to_string()).collect()))
                    .expect("valid patterns")
            }),
            expires_at: None,
        }
    }

    fn request(room: &str, event: &str) -> ClientPublish {
        ClientPublish {
            room: room.into(),
            event: event.into(),
            data: serde_json::json!({"text": "hi"}),
        }
    }

    #[test]
    fn only_rooms_the_publish_claim_names_and_valid_messages_pass() {
        let chat = identity(Some(&["chat.*"]));
        let message = plan(&chat, request("chat.lobby", "say"), "/", 1000).expect("allowed");
        assert_eq!(message.room().as_deref(), Some("chat.lobby"));
        let refused = [
            (
                "no claim",
                identity(None),
                "chat.lobby",
                "say",
                Outcome::forbidden,
            ),
            (
                "other room",
                chat.clone(),
                "news",
                "say",
                Outcome::forbidden,
            ),
            (
                "a user room",
                identity(Some(&["*"])),
                "user:bob",
                "say",
                Outcome::forbidden,
            ),
            (
                "reserved event",
                chat.clone(),
                "chat.lobby",
                "connect",
                Outcome::invalid,
            ),
            (
                "empty event",
                chat.clone(),
                "chat.lobby",
                "",
                Outcome::invalid,
            ),
        ];
        for (case, who, room, event, outcome) in refused {
            let got = plan(&who, request(room, event), "/", 1000)
                .map(|_| ())
                .map_err(|(o, _)| o);
            assert_eq!(got, Err(outcome), "{case}");
        }
        let anonymous = plan(
            &Identity::anonymous(),
            request("chat.lobby", "say"),
            "/",
            1000,
        );
        assert!(
            matches!(&anonymous, Err((Outcome::forbidden, m)) if m.contains("this connection has none")),
            "{:?}",
            anonymous.map(|_| ())
        );
        let big = ClientPublish {
            data: serde_json::json!("x".repeat(2000)),
            ..request("chat.lobby", "say")
        };
        assert_eq!(
            plan(&chat, big, "/", 1000).map(|_| ()).map_err(|(o, _)| o),
            Err(Outcome::too_large)
        );
    }
}
