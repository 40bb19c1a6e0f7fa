//! The one delivery path: write a validated message to this node's matching sockets.

use std::sync::Arc;

use futures::future::BoxFuture;
use socketioxide::{BroadcastError, SocketIo, adapter::Adapter};

use super::{Message, now_us};
use crate::{
    history::{Offset, RECOVERING_ROOM},
    metrics::Metrics,
    room_sizes::RoomSizes,
};

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
                    tracing::debug!(
                        failed = errors.len(),
                        "some sockets could not take the message"
                    );
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
