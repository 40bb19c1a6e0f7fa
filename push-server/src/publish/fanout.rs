//! The node's ordered delivery of the fan-out log, and the gate a recovering socket
//! passes to join its rooms without losing or repeating a message.
//!
//! The log reader delivers entries one at a time under [`Fanout`]'s lock and records
//! each in a short ring of recent deliveries. A recovering socket replays history up to
//! the log position its read saw (`log_end`), then, under the same lock, compares it
//! with the last position this node delivered: what the node delivered in between comes
//! from the ring, then the socket joins its rooms — no live delivery can interleave.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::sync::{Mutex, MutexGuard, watch};

use super::{Message, deliver::NodeDelivery};
use crate::history::Offset;

/// Recent deliveries kept for recovering sockets: by count and by payload bytes.
const RING_MESSAGES: usize = 1024;
const RING_BYTES: usize = 8 << 20;

pub struct Fanout {
    recent: Mutex<Recent>,
    delivered: watch::Sender<Offset>,
    /// Whether events carry their offset as the last argument (history on).
    with_offsets: bool,
}

/// What this node delivered last, and the messages just before.
pub struct Recent {
    pub last: Offset,
    ring: VecDeque<(Offset, Arc<Message>)>,
    bytes: usize,
    /// The newest position evicted from the ring.
    floor: Offset,
}

fn size_of(message: &Message) -> usize {
    message.data.0.get().len() + message.event.len()
}

impl Recent {
    fn push(&mut self, offset: Offset, message: Arc<Message>) {
        self.bytes += size_of(&message);
        self.ring.push_back((offset, message));
        while self.ring.len() > RING_MESSAGES || self.bytes > RING_BYTES {
            let Some((evicted, message)) = self.ring.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(size_of(&message));
            self.floor = evicted;
        }
        self.last = offset;
    }

    /// Everything delivered after `after`, oldest first; `None` when the ring no longer
    /// reaches back that far.
    pub fn since(&self, after: Offset) -> Option<impl Iterator<Item = &(Offset, Arc<Message>)>> {
        (self.floor <= after).then(|| self.ring.iter().filter(move |(o, _)| *o > after))
    }
}

impl Fanout {
    /// `start`: the log position this node starts reading after.
    pub fn new(start: Offset, with_offsets: bool) -> Self {
        Self {
            recent: Mutex::new(Recent {
                last: start,
                ring: VecDeque::new(),
                bytes: 0,
                floor: start,
            }),
            delivered: watch::Sender::new(start),
            with_offsets,
        }
    }

    pub fn with_offsets(&self) -> bool {
        self.with_offsets
    }

    /// Delivers one log entry to this node's sockets, in log order.
    pub async fn deliver(&self, delivery: &dyn NodeDelivery, offset: Offset, message: Message) {
        let message = Arc::new(message);
        let mut recent = self.recent.lock().await;
        let shown = self.with_offsets.then_some(offset);
        delivery.deliver(&message, shown).await;
        recent.push(offset, message);
        drop(recent);
        self.delivered.send_replace(offset);
    }

    /// Moves the delivered position to `to` without a delivery: with delivery by
    /// interest, a position marker proves the node received everything of its rooms up to
    /// there.
    pub async fn advance(&self, to: Offset) {
        let mut recent = self.recent.lock().await;
        if to > recent.last {
            recent.last = to;
            drop(recent);
            self.delivered.send_if_modified(|last| {
                let moved = to > *last;
                if moved {
                    *last = to;
                }
                moved
            });
        }
    }

    /// Holds deliveries back while a recovering socket joins its rooms.
    pub async fn hold(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().await
    }

    /// The last position delivered here (rooms joined now get what comes after it).
    pub fn last(&self) -> Offset {
        *self.delivered.borrow()
    }

    /// Waits until this node delivered up to `offset`; false after `timeout`.
    pub async fn reached(&self, offset: Offset, timeout: Duration) -> bool {
        let mut seen = self.delivered.subscribe();
        tokio::time::timeout(timeout, seen.wait_for(|last| *last >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{Data, PublishTarget};

    fn message(bytes: usize) -> Arc<Message> {
        let data = serde_json::value::RawValue::from_string(format!("\"{}\"", "x".repeat(bytes)))
            .expect("json");
        Arc::new(Message {
            event: "e".into(),
            data: Data(data),
            target: PublishTarget::Broadcast,
            namespace: "/".into(),
            origin_us: None,
            idempotency_key: None,
        })
    }

    fn at(ms: u64) -> Offset {
        Offset { ms, seq: 0 }
    }

    #[test]
    fn the_ring_answers_only_what_it_still_holds() {
        let fanout = Fanout::new(at(0), true);
        let mut recent = fanout.recent.try_lock().expect("free");
        for ms in 1..=3 {
            recent.push(at(ms), message(1));
        }
        let since: Vec<u64> = recent
            .since(at(1))
            .expect("held")
            .map(|(o, _)| o.ms)
            .collect();
        assert_eq!(since, [2, 3]);
        assert_eq!(
            recent.since(at(0)).map(|s| s.count()),
            Some(3),
            "from the start"
        );
        for ms in 4..=(3 + RING_MESSAGES as u64) {
            recent.push(at(ms), message(1));
        }
        assert!(recent.since(at(2)).is_none(), "evicted by count");
        assert!(recent.since(at(3)).is_some());
        recent.push(at(5_000), message(RING_BYTES));
        assert_eq!(
            recent.ring.len(),
            0,
            "a message over the byte bound is not kept"
        );
        assert!(recent.since(at(4_999)).is_none());
        assert_eq!(recent.last, at(5_000));
    }
}
