//! The bounded queue of packet batches waiting for a socket's transport.
//!
//! It replaces a `tokio::sync::mpsc` channel: tokio allocates a 32-slot block at
//! creation whatever the capacity, ~6 KB per session with engineio's batch type,
//! paid by every idle connection. This queue allocates nothing until a packet is
//! queued and gives its buffer back once drained. Many senders (the socket's
//! owners), one receiver (the transport holding the socket's `internal_rx` lock).
//!
//! It also holds the socket's volatile slot: the latest volatile batch, which
//! bypasses the bound and overwrites the previous one if that was not sent yet
//! (it was a `tokio::sync::watch` channel, ~0.6 KB per session).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use engineioxide_core::PacketBuf;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{SendError, TryRecvError, TrySendError};

struct State {
    items: VecDeque<PacketBuf>,
    /// Slots promised to [`QueuePermit`]s not used yet.
    reserved: usize,
    closed: bool,
    /// The latest volatile batch not sent yet (boxed: it is rare).
    volatile: Option<Box<PacketBuf>>,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// The one receiver waiting for a batch.
    receiver: AtomicWaker,
    /// Senders waiting for room, and waiters of [`QueueTx::closed`].
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the state consistent (plain pushes
        // and pops), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue holding at most `capacity` batches.
pub(crate) fn queue(capacity: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            reserved: 0,
            closed: false,
            volatile: None,
        }),
        capacity: capacity.max(1),
        receiver: AtomicWaker::new(),
        changed: Notify::new(),
    });
    (QueueTx(shared.clone()), QueueRx(shared))
}

/// The sending side; clones share the queue.
#[derive(Clone)]
pub(crate) struct QueueTx(Arc<Shared>);

impl QueueTx {
    pub(crate) fn try_send(&self, batch: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(TrySendError::Closed(batch));
        }
        if state.items.len() + state.reserved >= self.0.capacity {
            return Err(TrySendError::Full(batch));
        }
        state.items.push_back(batch);
        drop(state);
        self.0.receiver.wake();
        Ok(())
    }

    /// Waits for room, then queues the batch.
    pub(crate) async fn send(&self, mut batch: PacketBuf) -> Result<(), SendError<PacketBuf>> {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_send(batch) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(b)) => return Err(SendError(b)),
                Err(TrySendError::Full(b)) => batch = b,
            }
            changed.await;
        }
    }

    /// Promises one slot: the permit's batch is queued without a capacity check.
    pub(crate) fn try_reserve(&self) -> Result<QueuePermit<'_>, TrySendError<()>> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.items.len() + state.reserved >= self.0.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(QueuePermit { queue: &self.0 })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().closed
    }

    /// Puts `batch` in the volatile slot, replacing one not sent yet; false once closed.
    pub(crate) fn send_volatile(&self, batch: PacketBuf) -> bool {
        let mut state = self.0.lock();
        if state.closed {
            return false;
        }
        state.volatile = Some(Box::new(batch));
        drop(state);
        self.0.receiver.wake();
        true
    }

    /// Completes once the receiver closed the queue or was dropped.
    pub(crate) async fn closed(&self) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_closed() {
                return;
            }
            changed.await;
        }
    }

    /// Batches queued now (tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }
}

impl std::fmt::Debug for QueueTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.0.lock();
        f.debug_struct("QueueTx")
            .field("queued", &state.items.len())
            .field("reserved", &state.reserved)
            .field("capacity", &self.0.capacity)
            .field("closed", &state.closed)
            .finish()
    }
}

/// One promised slot of the queue; dropping it unused gives the slot back.
pub(crate) struct QueuePermit<'a> {
    queue: &'a Shared,
}

impl QueuePermit<'_> {
    pub(crate) fn send(self, batch: PacketBuf) {
        let mut state = self.queue.lock();
        state.reserved -= 1;
        // A reserved slot is honoured even if the receiver closed meanwhile (as
        // tokio's permits are); the batch is then dropped with the queue.
        state.items.push_back(batch);
        drop(state);
        self.queue.receiver.wake();
        std::mem::forget(self);
    }
}

impl Drop for QueuePermit<'_> {
    fn drop(&mut self) {
        self.queue.lock().reserved -= 1;
        self.queue.changed.notify_waiters();
    }
}

/// What the receiver takes next.
pub(crate) enum Batch {
    /// From the bounded queue, in order.
    Queued(PacketBuf),
    /// The volatile slot's batch.
    Volatile(PacketBuf),
}

/// The receiving side (one per queue).
pub(crate) struct QueueRx(Arc<Shared>);

impl QueueRx {
    /// The next queued batch (the volatile slot is not looked at).
    #[cfg(any(test, feature = "__test_harness"))]
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<PacketBuf>> {
        if let Some(ready) = self.pop() {
            return Poll::Ready(ready);
        }
        self.0.receiver.register(cx.waker());
        // Checked again after registering, so a batch pushed in between is not missed.
        match self.pop() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    #[cfg(any(test, feature = "__test_harness"))]
    pub(crate) async fn recv(&mut self) -> Option<PacketBuf> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next queued batch, else the volatile one (`Batch::Volatile`): queued
    /// packets go first, as with the transports' biased selects before.
    pub(crate) fn poll_next_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        if let Some(ready) = self.take_batch() {
            return Poll::Ready(ready);
        }
        self.0.receiver.register(cx.waker());
        match self.take_batch() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    pub(crate) async fn next_batch(&mut self) -> Option<Batch> {
        poll_fn(|cx| self.poll_next_batch(cx)).await
    }

    fn take_batch(&mut self) -> Option<Option<Batch>> {
        match self.pop() {
            Some(Some(batch)) => Some(Some(Batch::Queued(batch))),
            popped => match self.0.lock().volatile.take() {
                Some(batch) => Some(Some(Batch::Volatile(*batch))),
                None => popped.map(|_| None),
            },
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<PacketBuf, TryRecvError> {
        match self.pop() {
            Some(Some(batch)) => Ok(batch),
            Some(None) => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// No more batches are accepted; those queued can still be received.
    pub(crate) fn close(&mut self) {
        self.0.lock().closed = true;
        self.0.changed.notify_waiters();
    }

    /// `Some(Some(batch))`, `Some(None)` once closed and drained, `None` when empty.
    fn pop(&mut self) -> Option<Option<PacketBuf>> {
        let mut state = self.0.lock();
        match state.items.pop_front() {
            Some(batch) => {
                if state.items.is_empty() {
                    // An idle socket keeps no buffer: most push connections are idle.
                    state.items = VecDeque::new();
                }
                drop(state);
                self.0.changed.notify_waiters();
                Some(Some(batch))
            }
            None if state.closed && state.reserved == 0 => Some(None),
            None => None,
        }
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for QueueRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRx").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engineioxide_core::Packet;
    use smallvec::smallvec;

    fn batch(n: usize) -> PacketBuf {
        smallvec![Packet::Message(n.to_string().into())]
    }

    fn text(b: PacketBuf) -> String {
        match &b[0] {
            Packet::Message(m) => m.to_string(),
            p => panic!("{p:?}"),
        }
    }

    #[tokio::test]
    async fn fifo_bounded_and_permits_hold_slots() {
        let (tx, mut rx) = queue(2);
        tx.try_send(batch(1)).unwrap();
        let permit = tx.try_reserve().unwrap();
        assert!(matches!(tx.try_send(batch(9)), Err(TrySendError::Full(_))));
        permit.send(batch(2));
        assert_eq!(text(rx.recv().await.unwrap()), "1");
        assert_eq!(text(rx.try_recv().unwrap()), "2");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        drop(tx.try_reserve().unwrap());
        tx.try_send(batch(3)).unwrap();
        tx.try_send(batch(4)).unwrap();
        assert_eq!(tx.len(), 2);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_and_close_ends_everything() {
        let (tx, mut rx) = queue(1);
        tx.try_send(batch(1)).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(2)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(text(rx.recv().await.unwrap()), "1");
        assert!(waiting.await.unwrap());
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        rx.close();
        closed.await.unwrap();
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(batch(3)),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(text(rx.recv().await.unwrap()), "2");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn the_volatile_slot_keeps_the_latest_and_comes_after_the_queue() {
        let (tx, mut rx) = queue(1);
        assert!(tx.send_volatile(batch(1)));
        assert!(tx.send_volatile(batch(2)));
        tx.try_send(batch(3)).unwrap();
        let next = |b: Option<Batch>| match b {
            Some(Batch::Queued(b)) => format!("queued {}", text(b)),
            Some(Batch::Volatile(b)) => format!("volatile {}", text(b)),
            None => "end".to_string(),
        };
        assert_eq!(next(rx.next_batch().await), "queued 3");
        assert_eq!(next(rx.next_batch().await), "volatile 2");
        rx.close();
        assert!(!tx.send_volatile(batch(4)));
        assert_eq!(next(rx.next_batch().await), "end");
    }

    #[tokio::test]
    async fn the_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = queue(4);
        let receiving = tokio::spawn(async move { rx.recv().await.map(text) });
        tokio::task::yield_now().await;
        tx.try_send(batch(7)).unwrap();
        assert_eq!(receiving.await.unwrap().as_deref(), Some("7"));
    }
}
