//! What a socket's handlers keep on the socket (socketioxide extensions) and read back:
//! its verified identity and its inbound event budget.

use std::sync::{Arc, Mutex};

use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};

use super::rate;
use crate::auth::identity::Identity;

/// Gives the socket its inbound event budget (see `rate`).
pub(super) fn give_budget<A: Adapter>(socket: &SocketRef<A>, budget: rate::EventBudget) {
    socket
        .extensions
        .insert(Budget(Arc::new(Mutex::new(budget))));
}

/// The socket's inbound event budget (see `rate`).
#[derive(Clone)]
struct Budget(Arc<Mutex<rate::EventBudget>>);

/// Whether this request may be served; refuses (the ack `refused` makes) or disconnects
/// a flood.
pub(super) fn within_budget<A: Adapter, T: serde::Serialize>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    refused: impl FnOnce() -> T,
) -> Option<AckSender<A>> {
    let verdict = socket
        .extensions
        .get::<Budget>()
        .map_or(rate::Verdict::Allow, |b| {
            b.0.lock().map_or(rate::Verdict::Allow, |mut budget| {
                budget.take(std::time::Instant::now())
            })
        });
    if verdict == rate::Verdict::Allow {
        return Some(ack);
    }
    let _ = ack.send(&refused());
    if verdict == rate::Verdict::Disconnect {
        tracing::info!(sid = %socket.id, "request flood: disconnecting");
        let _ = socket.clone().disconnect();
    }
    None
}

/// The user whose per-user slot this socket holds in Redis (`user_limit`).
#[derive(Clone)]
pub(super) struct UserSlot(pub String);

/// The socket's verified identity (anonymous when it has none).
pub(super) fn identity_of<A: Adapter>(socket: &SocketRef<A>) -> Identity {
    socket
        .extensions
        .get::<Identity>()
        .unwrap_or_else(Identity::anonymous)
}
