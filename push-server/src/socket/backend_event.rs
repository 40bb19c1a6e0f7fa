//! A client event handed to the backend (`crate::backend`): within the socket's event
//! budget and the in-flight bounds, the backend's answer becomes the ack
//! `{"result", "joined"?, "left"?, "refused"?, "published"?}` after its `join`, `leave`
//! and `publish` are applied for this socket; `{"error"}` says why there is none.

use serde::Serialize;
use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef, State, TryData},
};

use super::{
    client_publish::{PublishAck, hand_over, room_message},
    extensions::{backend_slot, identity_of, within_budget},
    membership::{join, leave},
    rooms::{Refused, RoomsAck},
};
use crate::{
    backend::{Answer, CallError, EventRequest, MAX_PUBLISHES_PER_ANSWER},
    metrics::{BackendResult, Source},
    state::SharedState,
};

/// The client's ack.
#[derive(Debug, Default, Serialize)]
pub(super) struct BackendAck {
    /// The backend's `result` (present when it answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    joined: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Vec<String>>,
    /// Rooms of the answer's `join` / `leave` this socket could not join or leave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    refused: Vec<Refused>,
    /// One entry per message of the answer's `publish`, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<Vec<PublishAck>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl BackendAck {
    fn error(reason: impl Into<String>) -> Self {
        Self {
            error: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Adds what a join or leave did; a failed one (recovering, Redis down) is the error.
    fn rooms(&mut self, rooms: RoomsAck) {
        if rooms.joined.is_some() {
            self.joined = rooms.joined;
        }
        if rooms.left.is_some() {
            self.left = rooms.left;
        }
        self.refused.extend(rooms.refused);
        if let Some(e) = rooms.error {
            self.error = Some(e);
        }
    }
}

pub(super) async fn on_backend_event<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<SharedState>,
) {
    let Some(ack) = within_budget(&socket, ack, || {
        BackendAck::error("rate limited: too many requests; slow down")
    }) else {
        return;
    };
    let answer = match data {
        Err(e) => BackendAck::error(format!("data: {e}")),
        Ok(data) => call(&socket, &state, &event, &data).await,
    };
    let _ = ack.send(&answer);
}

async fn call<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    event: &str,
    data: &Value,
) -> BackendAck {
    let Some(backend) = state.config.backend.as_ref() else {
        return BackendAck::error("no backend configured");
    };
    // Both places are held until the answer is applied.
    let (Some(_socket_slot), Some(_node_slot)) = (backend_slot(socket), backend.try_reserve())
    else {
        state.metrics.backend_event(BackendResult::busy);
        return BackendAck::error(CallError::Busy.to_string());
    };
    let identity = identity_of(socket);
    let sid = socket.id.to_string();
    let id = crate::history::session::new_pid().unwrap_or_else(|| format!("{sid}-{event}"));
    let request = EventRequest {
        user: identity.user.as_deref(),
        sid: &sid,
        event,
        data,
        id: &id,
    };
    let started = std::time::Instant::now();
    let answered = backend.call(&request, state.config.max_payload_bytes).await;
    state
        .metrics
        .backend_latency
        .observe(started.elapsed().as_secs_f64());
    match answered {
        Err(e) => {
            state.metrics.backend_event(e.result());
            tracing::debug!(sid, event, id, error = %e, "backend event without an answer");
            BackendAck::error(e.to_string())
        }
        Ok(answer) => {
            state.metrics.backend_event(BackendResult::answered);
            apply(socket, state, answer).await
        }
    }
}

/// Applies the answer's room changes and publishes for this socket.
async fn apply<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    answer: Answer,
) -> BackendAck {
    let mut ack = BackendAck {
        result: Some(answer.result),
        ..BackendAck::default()
    };
    if answer.publish.len() > MAX_PUBLISHES_PER_ANSWER {
        ack.error = Some(format!(
            "backend answer asks for {} publishes, at most {MAX_PUBLISHES_PER_ANSWER}: none made",
            answer.publish.len()
        ));
    } else if !answer.publish.is_empty() {
        let mut published = Vec::with_capacity(answer.publish.len());
        for message in answer.publish {
            let planned = room_message(
                message.room,
                message.event,
                &message.data,
                socket.ns(),
                state.config.max_payload_bytes,
            );
            published.push(match planned {
                Ok(message) => hand_over(state, message, Source::backend).await,
                Err((outcome, reason)) => {
                    state.metrics.publish(Source::backend, outcome);
                    PublishAck::refused(reason)
                }
            });
        }
        ack.published = Some(published);
    }
    if !answer.leave.is_empty() {
        ack.rooms(leave(socket, state, answer.leave).await);
    }
    if !answer.join.is_empty() {
        ack.rooms(join(socket, state, answer.join).await);
    }
    ack
}
