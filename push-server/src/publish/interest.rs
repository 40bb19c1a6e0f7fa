//! Delivery by interest (`PUSH_FANOUT=interest`): a node receives only the messages of
//! the rooms its sockets are in, and namespace broadcasts, so what Redis sends and what
//! the nodes parse per publish no longer grows with the node count.
//!
//! Every append still goes to the fan-out log, which gives the message its offset in the
//! cluster's one order, and the same script publishes it last on its room's pub/sub
//! channel (`Keys::room_channel`; in both modes, so nodes of either kind can share a
//! cluster during a rolling update). A node subscribes, on one connection of its own, to the
//! channels of its rooms. Pub/sub on one connection keeps Redis's execution order, so a
//! node receives the log's order restricted to its rooms, and its delivery, ring and
//! recovery gate (`fanout`) work unchanged.
//!
//! - A room new to the node is subscribed, then a position marker (`script::mark`) is
//!   sent to the node's own channel: once it is back, every later message of the room
//!   reaches the node. Joins wait for that ([`Interest::ensure`]); a room without members
//!   is unsubscribed [`RELEASE_AFTER`] after it was last asked for.
//! - Pub/sub forgets what it sent while a connection was down: after every (re)connect
//!   the node subscribes again, waits for a marker (log position L) and reads the log from
//!   its last position up to L, with the log reader's gap check and replica wait, then
//!   goes on with pub/sub. A node whose queue overflows drops its connection and does the
//!   same.
//! - A node that hears nothing sends itself a marker every second or two, so its position
//!   (which joins record in recovery sessions) keeps up with the log's end.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use push_contract::{defaults, socket::RESERVED_ROOM_PREFIX};
use redis::{
    AsyncConnectionConfig, FromRedisValue, PushInfo, PushKind, RedisError, Value,
    aio::MultiplexedConnection,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    log::{self, Reader},
    now_us,
};
use crate::{history::Offset, room_sizes::RoomSizes};

/// How long a join waits for its rooms to be received before it is refused.
const ENSURE_WAIT: Duration = Duration::from_secs(5);
/// A room without members stays subscribed this long after it was last asked for: a
/// reconnecting member comes back within it, and churn does not thrash Redis.
pub const RELEASE_AFTER: Duration = Duration::from_secs(30);
/// How often rooms without members are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Messages (and bytes) received but not yet delivered, at most: a node further behind
/// drops its connection and catches up from the log.
const QUEUE_MESSAGES: usize = 65_536;
const QUEUE_BYTES: usize = 64 << 20;
/// Pushes handled between two looks at the rest of the connection loop.
const BATCH: usize = 128;
/// Join requests waiting for the receiver at most (a reconnect storm's connects each
/// ask once; the receiver answers all that wait with one marker).
const REQUESTS: usize = 65_536;
/// A node that received nothing for this long sends itself a marker: its position stays
/// within about twice this of the log's end, so a join records about where it started.
const MARK_QUIET: Duration = Duration::from_secs(1);
/// How long a (re)connect waits for its first marker.
const MARKER_WAIT: Duration = Duration::from_secs(10);
/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 1_000;

/// The rooms this node receives, shared by the joins and the receiver.
pub struct Interest {
    /// Channel → what it is for.
    wanted: Mutex<HashMap<String, Wanted>>,
    requests: mpsc::Sender<oneshot::Sender<()>>,
    keys: crate::history::Keys,
    room_sizes: Arc<RoomSizes>,
}

struct Wanted {
    /// `None`: the namespace's broadcasts (never released).
    room: Option<String>,
    touched: Instant,
    /// Subscribed on the current connection, and a marker sent after that came back.
    ready: bool,
}

impl Interest {
    /// The rooms' handle and the receiver that serves it (run with [`Receiver::run`]).
    pub fn new(reader: Reader, room_sizes: Arc<RoomSizes>, node: &str) -> (Arc<Self>, Receiver) {
        let (requests, pending) = mpsc::channel(REQUESTS);
        let keys = reader.keys.clone();
        let broadcast = keys.room_channel(defaults::NAMESPACE, None);
        let interest = Arc::new(Self {
            wanted: Mutex::new(HashMap::from([(
                broadcast,
                Wanted {
                    room: None,
                    touched: Instant::now(),
                    ready: false,
                },
            )])),
            requests,
            keys: keys.clone(),
            room_sizes,
        });
        // A process of its own under the node's name: two processes that share a name
        // (a misconfiguration) must not answer each other's joins.
        let process = crate::history::session::new_pid().unwrap_or_default();
        let receiver = Receiver {
            interest: interest.clone(),
            marker_channel: keys.marker_channel(&format!("{node}:{process}")),
            reader,
            pending,
            seq: 0,
            waiting: Vec::new(),
        };
        (interest, receiver)
    }

    /// Makes sure this node receives every message of `rooms` it handles from now on;
    /// false when that could not be confirmed within [`ENSURE_WAIT`] (Redis away): the
    /// join must not happen, a message could be missed.
    pub async fn ensure(&self, rooms: &[String]) -> bool {
        let mut ready = true;
        if let Ok(mut wanted) = self.wanted.lock() {
            let now = Instant::now();
            for room in rooms
                .iter()
                .filter(|r| !r.starts_with(RESERVED_ROOM_PREFIX))
            {
                let channel = self.keys.room_channel(defaults::NAMESPACE, Some(room));
                let entry = wanted.entry(channel).or_insert_with(|| Wanted {
                    room: Some(room.clone()),
                    touched: now,
                    ready: false,
                });
                entry.touched = now;
                ready &= entry.ready;
            }
        }
        ready || self.sync().await
    }

    /// Waits until a marker sent now came back: this node has then received every
    /// message of its rooms appended before now (the recovery gate's catch-up needs it).
    pub async fn sync(&self) -> bool {
        let (done, answered) = oneshot::channel();
        if self.requests.try_send(done).is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(ENSURE_WAIT, answered).await,
            Ok(Ok(()))
        )
    }

    fn snapshot(&self) -> Vec<String> {
        self.wanted
            .lock()
            .map(|wanted| wanted.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set_ready(&self, channels: &[String], ready: bool) {
        if let Ok(mut wanted) = self.wanted.lock() {
            for channel in channels {
                if let Some(w) = wanted.get_mut(channel) {
                    w.ready = ready;
                }
            }
        }
    }

    fn all_unready(&self) {
        if let Ok(mut wanted) = self.wanted.lock() {
            for w in wanted.values_mut() {
                w.ready = false;
            }
        }
    }

    /// Rooms without members here, not asked for within [`RELEASE_AFTER`]: forgotten.
    fn release_idle(&self) -> Vec<String> {
        let Ok(mut wanted) = self.wanted.lock() else {
            return Vec::new();
        };
        let idle: Vec<String> = wanted
            .iter()
            .filter(|(_, w)| {
                w.room
                    .as_deref()
                    .is_some_and(|room| self.room_sizes.get(Some(room)) == 0)
                    && w.touched.elapsed() >= RELEASE_AFTER
            })
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in &idle {
            wanted.remove(channel);
        }
        idle
    }
}

/// One pushed pub/sub message, as the receiver reads it.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// An append of a room this node is in: its offset and channel form.
    Append(Offset, Vec<u8>),
    /// A position marker: the log position it carries and its sequence number.
    Marker(Offset, u64),
    /// The connection is gone (pushed by the client library).
    Disconnected,
    /// A subscription confirmation, or anything else of no interest.
    Other,
}

fn received(push: PushInfo, marker_channel: &str) -> Received {
    match push.kind {
        PushKind::Disconnection => return Received::Disconnected,
        PushKind::Message => {}
        _ => return Received::Other,
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return Received::Other;
    };
    let (Ok(channel), Ok(payload)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        return Received::Other;
    };
    let Some(space) = payload.iter().position(|b| *b == b' ') else {
        return Received::Other;
    };
    let Some(offset) = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|id| id.parse::<Offset>().ok())
    else {
        return Received::Other;
    };
    if channel == marker_channel {
        return std::str::from_utf8(&payload[space + 1..])
            .ok()
            .and_then(|seq| seq.parse().ok())
            .map_or(Received::Other, |seq| Received::Marker(offset, seq));
    }
    Received::Append(offset, payload[space + 1..].to_vec())
}

/// The node's pub/sub connection: subscribes what [`Interest`] wants, delivers what
/// arrives, catches up from the log after every (re)connect.
pub struct Receiver {
    interest: Arc<Interest>,
    reader: Reader,
    marker_channel: String,
    pending: mpsc::Receiver<oneshot::Sender<()>>,
    seq: u64,
    /// Markers sent for joins, not back yet (kept over a reconnect: the next connection
    /// subscribes everything wanted and answers them).
    waiting: Vec<Waiting>,
}

/// What the connection loop does next.
enum Next {
    Push(Option<PushInfo>),
    Join(oneshot::Sender<()>),
    Sweep,
    /// Time to see whether the node heard nothing for [`MARK_QUIET`].
    Quiet,
}

/// A marker sent and the joins waiting for it.
struct Waiting {
    seq: u64,
    channels: Vec<String>,
    done: Vec<oneshot::Sender<()>>,
}

/// What the push sender hands over: the queue and what it holds.
struct Queue {
    pushes: mpsc::Receiver<PushInfo>,
    bytes: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

impl Queue {
    fn took(&self, push: &PushInfo) {
        self.bytes.fetch_sub(push_size(push), Ordering::Relaxed);
    }
}

fn push_size(push: &PushInfo) -> usize {
    push.data
        .iter()
        .map(|v| match v {
            Value::BulkString(b) => b.len(),
            _ => 16,
        })
        .sum()
}

/// Room channels among `subscribed` (the node's marker channel is not one).
fn count(subscribed: usize) -> i64 {
    i64::try_from(subscribed.saturating_sub(1)).unwrap_or(i64::MAX)
}

fn io_error(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, what))
}

impl Receiver {
    /// Receives and delivers until `stop` fires, connecting again after any error.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let error = tokio::select! {
                _ = stop.cancelled() => return,
                e = self.connected() => e,
            };
            self.interest.all_unready();
            self.reader.metrics.room_channels.set(0);
            tracing::warn!(error = %error, after = %self.reader.fanout.last(), "room channels: connection lost: catching up from the log after reconnect");
            if started.elapsed() > Duration::from_secs(10) {
                delay = Duration::from_millis(100);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, Queue, u64)> {
        let (sender, pushes) = mpsc::channel(QUEUE_MESSAGES);
        let bytes = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        let (held, over) = (bytes.clone(), overflowed.clone());
        let wait_ms = self.reader.wait.map_or(0, |w| w.timeout_ms);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(wait_ms + 5_000)))
            .set_push_sender(move |push: PushInfo| {
                let size = push_size(&push);
                if held.load(Ordering::Relaxed) + size > QUEUE_BYTES {
                    over.store(true, Ordering::Relaxed);
                } else if sender.try_send(push).is_ok() {
                    held.fetch_add(size, Ordering::Relaxed);
                } else {
                    over.store(true, Ordering::Relaxed);
                }
                Ok::<(), Infallible>(())
            });
        let generation = self.reader.link.generation();
        let conn = redis::Client::open(self.reader.link.info())?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let queue = Queue {
            pushes,
            bytes,
            overflowed,
        };
        Ok((conn, queue, generation))
    }

    /// One connection's life; returns the error that ended it.
    async fn connected(&mut self) -> RedisError {
        let (mut conn, mut queue, generation) = match self.connect().await {
            Ok(connected) => connected,
            Err(e) => return e,
        };
        match self.resume(&mut conn, &mut queue, generation).await {
            Ok(subscribed) => {
                self.follow(&mut conn, &mut queue, generation, subscribed)
                    .await
            }
            Err(e) => e,
        }
    }

    /// Subscribes everything wanted, waits for a marker and reads the log from the last
    /// delivered position up to it: nothing appended while no connection listened is
    /// missed. Returns the channels subscribed.
    async fn resume(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut Queue,
        generation: u64,
    ) -> Result<HashSet<String>, RedisError> {
        let mut channels = self.interest.snapshot();
        channels.push(self.marker_channel.clone());
        for chunk in channels.chunks(CHANNELS_PER_COMMAND) {
            conn.subscribe(chunk).await?;
        }
        let seq = self.send_marker(conn).await?;
        // What arrives before the marker is in the log read below.
        let marker = async {
            loop {
                let Some(push) = queue.pushes.recv().await else {
                    return Err(io_error("the push queue closed"));
                };
                queue.took(&push);
                match received(push, &self.marker_channel) {
                    Received::Marker(until, s) if s == seq => return Ok(until),
                    Received::Disconnected => return Err(io_error("disconnected")),
                    _ => {}
                }
            }
        };
        let until = tokio::time::timeout(MARKER_WAIT, marker)
            .await
            .map_err(|_| io_error("the position marker did not come back"))??;
        self.catch_up(conn, generation, until).await?;
        self.reader.fanout.advance(until).await;
        self.interest.set_ready(&channels, true);
        self.reader.metrics.room_channels.set(count(channels.len()));
        // Every join that waited has its rooms now (they were wanted before the snapshot).
        self.answer(seq);
        Ok(channels.into_iter().collect())
    }

    async fn send_marker(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
        self.seq += 1;
        crate::history::script::mark(
            conn,
            &self.reader.keys.log(),
            &self.marker_channel,
            self.seq,
        )
        .await?;
        Ok(self.seq)
    }

    /// Delivers the log's entries after the last delivered position, up to `until`.
    async fn catch_up(
        &self,
        conn: &mut MultiplexedConnection,
        generation: u64,
        until: Offset,
    ) -> Result<(), RedisError> {
        let log = self.reader.keys.log();
        let mut last = self.reader.fanout.last();
        let mut count = log::READ_BATCH;
        while last < until {
            let reply: Value = redis::cmd("XRANGE")
                .arg(&log)
                .arg(format!("({last}"))
                .arg(until.to_string())
                .arg("COUNT")
                .arg(count)
                .query_async(conn)
                .await?;
            let batch = log::entries(reply)?;
            let Some((newest, _, _)) = batch.last() else {
                // Entries up to `until` existed when the marker was sent: trimmed since.
                self.reader.gap(last, Some(until));
                return Ok(());
            };
            if let Some(wait) = self.reader.wait {
                self.reader
                    .replicated(conn, generation, wait, *newest)
                    .await?;
            }
            count = log::next_batch(batch.len(), batch.iter().map(|(_, m, _)| m.len()).sum());
            for (offset, payload, previous) in batch {
                self.reader.check(last, offset, previous);
                self.reader.deliver(offset, &payload).await;
                last = offset;
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Delivers what pub/sub brings, serves joins and releases idle rooms until an error.
    async fn follow(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut Queue,
        generation: u64,
        mut subscribed: HashSet<String>,
    ) -> RedisError {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.tick().await;
        let mut quiet = tokio::time::interval(MARK_QUIET);
        quiet.tick().await;
        let mut last_push = Instant::now();
        loop {
            if queue.overflowed.load(Ordering::Relaxed) {
                return io_error("this node fell behind its room channels");
            }
            if self.reader.link.generation() != generation {
                return io_error("the link moved to a new primary");
            }
            // Not biased: under a steady stream of pushes, joins and sweeps still get turns.
            let next = tokio::select! {
                push = queue.pushes.recv() => Next::Push(push),
                Some(done) = self.pending.recv() => Next::Join(done),
                _ = sweep.tick() => Next::Sweep,
                _ = quiet.tick() => Next::Quiet,
            };
            let result = match next {
                Next::Push(Some(push)) => {
                    last_push = Instant::now();
                    self.received(conn, queue, generation, push).await
                }
                Next::Quiet if last_push.elapsed() >= MARK_QUIET => {
                    self.send_marker(conn).await.map(|_| ())
                }
                Next::Quiet => Ok(()),
                Next::Push(None) => Err(io_error("the push queue closed")),
                Next::Join(done) => self.subscribe_wanted(conn, &mut subscribed, done).await,
                Next::Sweep => self.release(conn, &mut subscribed).await,
            };
            if let Err(e) = result {
                return e;
            }
        }
    }

    /// Handles `first` and whatever else is queued (up to [`BATCH`]), in order.
    async fn received(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut Queue,
        generation: u64,
        first: PushInfo,
    ) -> Result<(), RedisError> {
        let mut appends: Vec<(Offset, Vec<u8>)> = Vec::new();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(push) = next.take() {
            queue.took(&push);
            handled += 1;
            match received(push, &self.marker_channel) {
                Received::Append(offset, wire) => appends.push((offset, wire)),
                Received::Marker(until, seq) => {
                    self.deliver(conn, generation, std::mem::take(&mut appends))
                        .await?;
                    self.reader.fanout.advance(until).await;
                    self.answer(seq);
                }
                Received::Disconnected => return Err(io_error("disconnected")),
                Received::Other => {}
            }
            if handled < BATCH {
                next = queue.pushes.try_recv().ok();
            }
        }
        self.deliver(conn, generation, appends).await?;
        let behind = !queue.pushes.is_empty();
        let lag_ms = if behind {
            let now_ms = now_us() / 1_000;
            i64::try_from(now_ms.saturating_sub(self.reader.fanout.last().ms)).unwrap_or(i64::MAX)
        } else {
            0
        };
        self.reader.metrics.fanout_lag_ms.set(lag_ms);
        Ok(())
    }

    async fn deliver(
        &self,
        conn: &mut MultiplexedConnection,
        generation: u64,
        appends: Vec<(Offset, Vec<u8>)>,
    ) -> Result<(), RedisError> {
        // Appends the catch-up already delivered come again (they were published after
        // the subscription, before the marker): skipped.
        let last = self.reader.fanout.last();
        let appends: Vec<_> = appends.into_iter().filter(|(o, _)| *o > last).collect();
        let Some((newest, _)) = appends.last() else {
            return Ok(());
        };
        if let Some(wait) = self.reader.wait {
            self.reader
                .replicated(conn, generation, wait, *newest)
                .await?;
        }
        for (offset, wire) in appends {
            self.reader.deliver(offset, &wire).await;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Answers the joins waiting for markers up to `seq`.
    fn answer(&mut self, seq: u64) {
        let (answered, rest): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.seq <= seq);
        self.waiting = rest;
        for w in answered {
            self.interest.set_ready(&w.channels, true);
            for done in w.done {
                let _ = done.send(());
            }
        }
    }

    /// Subscribes what joins asked for (every request queued now in one command) and
    /// sends the marker they wait for.
    async fn subscribe_wanted(
        &mut self,
        conn: &mut MultiplexedConnection,
        subscribed: &mut HashSet<String>,
        first: oneshot::Sender<()>,
    ) -> Result<(), RedisError> {
        let mut done = vec![first];
        while let Ok(more) = self.pending.try_recv() {
            done.push(more);
        }
        let new: Vec<String> = self
            .interest
            .snapshot()
            .into_iter()
            .filter(|c| !subscribed.contains(c))
            .collect();
        for chunk in new.chunks(CHANNELS_PER_COMMAND) {
            conn.subscribe(chunk).await?;
        }
        subscribed.extend(new.iter().cloned());
        self.reader
            .metrics
            .room_channels
            .set(count(subscribed.len()));
        let seq = self.send_marker(conn).await?;
        self.waiting.push(Waiting {
            seq,
            channels: new,
            done,
        });
        Ok(())
    }

    async fn release(
        &self,
        conn: &mut MultiplexedConnection,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), RedisError> {
        let idle: Vec<String> = self
            .interest
            .release_idle()
            .into_iter()
            .filter(|c| subscribed.remove(c))
            .collect();
        for chunk in idle.chunks(CHANNELS_PER_COMMAND) {
            conn.unsubscribe(chunk).await?;
        }
        self.reader
            .metrics
            .room_channels
            .set(count(subscribed.len()));
        if !idle.is_empty() {
            tracing::debug!(rooms = idle.len(), "room channels without members released");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, channel: &str, payload: &str) -> PushInfo {
        PushInfo {
            kind,
            data: vec![
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    /// An [`Interest`] whose receiver is gone: joins are answered only from what is ready.
    fn without_receiver() -> Interest {
        let (requests, _) = mpsc::channel(1);
        Interest {
            wanted: Mutex::new(HashMap::new()),
            requests,
            keys: crate::history::Keys::new("p"),
            room_sizes: Arc::new(RoomSizes::default()),
        }
    }

    fn wanted(interest: &Interest) -> Vec<String> {
        let mut channels = interest.snapshot();
        channels.sort();
        channels
    }

    #[tokio::test]
    async fn a_join_waits_for_rooms_not_received_yet_and_never_subscribes_reserved_ones() {
        let interest = without_receiver();
        assert!(
            !interest.ensure(&["a".into()]).await,
            "not confirmed: the join must not happen"
        );
        assert_eq!(
            wanted(&interest),
            ["p:f:/:r:a"],
            "asked for: subscribed at the receiver's next turn"
        );
        interest.set_ready(&["p:f:/:r:a".into()], true);
        assert!(interest.ensure(&["a".into()]).await, "received already");
        assert!(
            interest
                .ensure(&["$push:recovering".into(), "a".into()])
                .await,
            "a reserved room is local only"
        );
        assert_eq!(wanted(&interest), ["p:f:/:r:a"]);
        interest.all_unready();
        assert!(
            !interest.ensure(&["a".into()]).await,
            "after a reconnect: wait again"
        );
    }

    #[test]
    fn rooms_without_members_are_released_after_a_while_broadcasts_never() {
        let interest = without_receiver();
        let long_ago = Instant::now()
            .checked_sub(RELEASE_AFTER + Duration::from_secs(1))
            .expect("monotonic clock far enough from its start");
        if let Ok(mut wanted) = interest.wanted.lock() {
            for (channel, room, touched) in [
                ("p:f:/:b", None, long_ago),
                ("p:f:/:r:old", Some("old"), long_ago),
                ("p:f:/:r:new", Some("new"), Instant::now()),
            ] {
                wanted.insert(
                    channel.into(),
                    Wanted {
                        room: room.map(String::from),
                        touched,
                        ready: true,
                    },
                );
            }
        }
        assert_eq!(interest.release_idle(), ["p:f:/:r:old"]);
        assert_eq!(wanted(&interest), ["p:f:/:b", "p:f:/:r:new"]);
    }

    #[test]
    fn pushes_are_appends_markers_or_nothing() {
        let at = |ms, seq| Offset { ms, seq };
        let cases = [
            (
                push(PushKind::Message, "p:f:/:r:a", r#"5-1 {"event":"e"}"#),
                Received::Append(at(5, 1), br#"{"event":"e"}"#.to_vec()),
            ),
            (
                push(PushKind::Message, "p:f:node:n", "7-0 3"),
                Received::Marker(at(7, 0), 3),
            ),
            (
                push(PushKind::Message, "p:f:node:n", "7-0 x"),
                Received::Other,
            ),
            (
                push(PushKind::Message, "p:f:/:r:a", "no-id"),
                Received::Other,
            ),
            (
                push(PushKind::Message, "p:f:/:r:a", "5-x {}"),
                Received::Other,
            ),
            (push(PushKind::Subscribe, "p:f:/:r:a", "1"), Received::Other),
            (
                PushInfo {
                    kind: PushKind::Disconnection,
                    data: vec![],
                },
                Received::Disconnected,
            ),
        ];
        for (push, want) in cases {
            assert_eq!(received(push, "p:f:node:n"), want);
        }
    }
}
