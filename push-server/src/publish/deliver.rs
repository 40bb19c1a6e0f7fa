//! The one delivery path: write a validated message to this node's matching sockets.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use futures::future::BoxFuture;
use socketioxide::{BroadcastError, SocketError, SocketIo, adapter::Adapter};

use super::{Message, now_us};
use crate::{
    conn::ConnRegistry,
    history::{Offset, RECOVERING_ROOM},
    metrics::{DropReason, Metrics},
    room_sizes::RoomSizes,
};

/// At most one slow-consumer warning per this many µs (the metric counts them all).
const WARN_EVERY_US: u64 = 10_000_000;

/// Delivery to this node's sockets, with the adapter type erased so HTTP handlers and
/// the log reader are not generic.
pub trait NodeDelivery: Send + Sync + 'static {
    /// Writes `message` (with `offset` as its last argument, when given: socket.io's
    /// connection state recovery); returns how many sockets it was written to.
    fn deliver<'a>(&'a self, message: &'a Message, offset: Option<Offset>) -> BoxFuture<'a, usize>;
}

pub struct SocketDelivery<A: Adapter> {
    pub io: SocketIo<A>,
    pub metrics: Arc<Metrics>,
    /// Recipients are counted from here, not by materialising the room.
    pub room_sizes: Arc<RoomSizes>,
    /// Where a slow consumer's connection is cut.
    pub conns: Arc<ConnRegistry>,
    /// When a slow consumer was last logged (µs since the epoch).
    pub warned_at: AtomicU64,
}

impl<A: Adapter> SocketDelivery<A> {
    /// Sockets whose send buffer overflowed stopped reading: their connection is cut, so
    /// the client reconnects and recovers what it missed (with history on) instead of
    /// silently missing messages.
    fn cut_slow_consumers(&self, message: &Message, dropped: usize) {
        self.metrics
            .slow_consumer_drop(DropReason::send_buffer_full, dropped as u64);
        let Some(ns) = self.io.of(&message.namespace) else {
            return;
        };
        let sockets = match message.room() {
            Some(room) => ns.local().to(room).sockets(),
            None => ns.local().sockets(),
        };
        let slow: Vec<String> = sockets
            .iter()
            .filter(|s| s.take_buffer_overflow())
            .map(|s| s.id.to_string())
            .collect();
        for sid in &slow {
            self.conns.cut(sid);
        }
        let now = now_us();
        let last = self.warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_US
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped,
                cut = slow.len(),
                "slow consumers: send buffer full, messages dropped, connections cut (they recover on reconnect)"
            );
        }
    }
}

impl<A: Adapter> NodeDelivery for SocketDelivery<A> {
    fn deliver<'a>(&'a self, message: &'a Message, offset: Option<Offset>) -> BoxFuture<'a, usize> {
        Box::pin(async move {
            let Some(ns) = self.io.of(&message.namespace) else {
                return 0;
            };
            // local() = this node's sockets only: every node reads the log itself.
            let room = message.room();
            let matching = self.room_sizes.get(room.as_deref());
            let operator = match room {
                Some(room) => ns.local().to(room),
                // A recovering socket gets broadcasts from its replay, in order.
                None => ns.local().except(RECOVERING_ROOM),
            };
            let sent = match offset {
                Some(offset) => {
                    operator
                        .emit(&message.event, &(&message.data, offset.to_string()))
                        .await
                }
                None => operator.emit(&message.event, &message.data).await,
            };
            let failed = match sent {
                Ok(()) => 0,
                Err(BroadcastError::Socket(errors)) => {
                    let full = errors
                        .iter()
                        .filter(|e| matches!(e, SocketError::InternalChannelFull))
                        .count();
                    if full > 0 {
                        self.cut_slow_consumers(message, full);
                    }
                    errors.len()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delivery failed");
                    matching
                }
            };
            let delivered = matching.saturating_sub(failed);
            self.metrics.messages_delivered.inc_by(delivered as u64);
            if let Some(origin) = message.origin_us {
                let seconds = now_us().saturating_sub(origin) as f64 / 1e6;
                self.metrics.publish_latency.observe(seconds);
            }
            delivered
        })
    }
}
