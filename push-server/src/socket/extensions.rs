//! What a socket's handlers keep on the socket (socketioxide extensions) and read back:
//! its verified identity, its inbound event budget, its backend requests in flight.

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

/// The socket's backend requests in flight (`backend_event`), at most
/// [`crate::backend::MAX_IN_FLIGHT_PER_SOCKET`].
#[derive(Clone, Default)]
struct BackendSlots(Arc<std::sync::atomic::AtomicUsize>);

pub(super) fn give_backend_slots<A: Adapter>(socket: &SocketRef<A>) {
    socket.extensions.insert(BackendSlots::default());
}

/// One of the socket's backend requests in flight; its place is given back on drop.
pub(super) struct BackendSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BackendSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A place among the socket's backend requests, if it has one free.
pub(super) fn backend_slot<A: Adapter>(socket: &SocketRef<A>) -> Option<BackendSlot> {
    use std::sync::atomic::Ordering;
    let slots = socket.extensions.get::<BackendSlots>()?.0;
    slots
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < crate::backend::MAX_IN_FLIGHT_PER_SOCKET).then_some(n + 1)
        })
        .ok()?;
    Some(BackendSlot(slots))
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
