//! socket.io's connection state recovery, across nodes. The connect middleware reads
//! the client's `{pid, offset}`, decides from its session and history in Redis what it
//! missed and whether all of it is still there ([`prepare`]), and sets the pid of the
//! CONNECT reply (the old one: `socket.recovered` is true; a new one: false). Once
//! CONNECT is out, [`finish`] replays, passes the node's delivery gate and joins the
//! socket's rooms, so it gets every message once and in order.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use push_contract::socket::{CONTINUITY_BROKEN, user_room};
use serde::Serialize;
use socketioxide::{adapter::Adapter, extract::SocketRef};
use tokio_util::sync::CancellationToken;

use socketioxide::socket::DisconnectReason;

use crate::{
    adapter::NodeSockets,
    auth::identity::Identity,
    history::{
        self, HistoryConfig, Keys, Offset, RECOVERING_ROOM, StreamKeys,
        recovery::{self, Gap, Recovery},
        script,
        session::{self, Session},
    },
    metrics::Recovered,
    publish::{Message, NAMESPACES, fanout::Fanout, parse},
    redis_link::RedisLink,
    state::{SharedState, Started},
};

/// How long a recovering socket waits for this node to deliver up to its history read.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long a reconnecting client waits for a recovery permit (see
/// `history::CONCURRENT_RECOVERIES`) before it is sent away to come back later.
const PERMIT_WAIT: Duration = Duration::from_secs(5);
/// The longest one recovery's history read may take before it is given up (and the
/// client sent away to come back later).
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long a room request waits for the socket's recovery to finish before it is
/// refused (joining earlier would deliver live messages ahead of missed ones).
const SETTLE_WAIT: Duration = Duration::from_secs(10);
/// Added to the heartbeat's own window (see [`received_grace`]): packets queued just
/// before a heartbeat.
const HEARTBEAT_MARGIN: Duration = Duration::from_secs(1);

/// What the client sent in its CONNECT payload for recovery.
#[derive(Debug, Default)]
pub(super) struct Asked {
    pub pid: Option<String>,
    pub offset: Option<String>,
}

/// The `continuity_broken` event's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Broken {
    reason: &'static str,
    /// The rooms to resync (`"user:<id>"` included); `None`: every room, the session
    /// itself is gone (the client must subscribe again).
    rooms: Option<Vec<String>>,
    /// Whether namespace broadcasts were missed too.
    broadcast: bool,
    /// Rooms of the session that the connecting identity may no longer join: not
    /// rejoined, nothing of them replayed.
    revoked: Vec<String>,
}

/// Decided in the middleware, applied by [`finish`] once CONNECT is out.
enum Pending {
    /// Not now (no permit, or history unreadable in time): the transport is cut at once
    /// and the client comes back with its pid and offset; its session is untouched.
    Deferred,
    Replay(Replay),
}

struct Replay {
    /// Held while the replay is in memory (see `history::CONCURRENT_RECOVERIES`).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    broken: Option<Broken>,
    replay: Vec<(Offset, Vec<u8>)>,
    /// Rooms to join after the replay (the user room included).
    rooms: Vec<String>,
    /// The log position the replay was read at.
    log_end: Offset,
}

/// A socket's recovery until [`finish`] is through: room requests wait for it (a room
/// joined before the replay would get live messages ahead of missed ones).
#[derive(Clone)]
pub(super) struct PendingRecovery {
    pending: Arc<Mutex<Option<Pending>>>,
    done: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Waits until the socket's recovery, if any, is through (at most [`SETTLE_WAIT`]);
/// false when it is still replaying.
pub(super) async fn settled<A: Adapter>(socket: &SocketRef<A>) -> bool {
    let Some(recovery) = socket.extensions.get::<PendingRecovery>() else {
        return true;
    };
    let mut done = recovery.done.subscribe();
    tokio::time::timeout(SETTLE_WAIT, done.wait_for(|d| *d))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// How far back from "now" a connected socket is known to have received everything:
/// a client that stopped answering is closed within one heartbeat period and timeout,
/// and the PONG it last sent proves it read all that was written before the PING.
pub fn received_grace(config: &crate::config::Config) -> Duration {
    config.ping_interval + config.ping_timeout + HEARTBEAT_MARGIN
}

/// The session a socket starts when it does not (or cannot) recover.
fn fresh_session(identity: &Identity, at: Offset) -> Session {
    Session {
        user: identity.user.clone(),
        connected_at: at,
        rooms: BTreeMap::new(),
        received_through_ms: None,
    }
}

fn broken_event(recovery: &Recovery, revoked: Vec<String>) -> Broken {
    Broken {
        reason: reason_of(recovery, !revoked.is_empty()),
        rooms: Some(
            recovery
                .broken
                .iter()
                .filter_map(|(r, _)| r.clone())
                .collect(),
        ),
        broadcast: recovery.broken.iter().any(|(r, _)| r.is_none()),
        revoked,
    }
}

/// The event's reason: the gap that explains most (trimmed, then too much, then
/// expired); rooms no longer allowed when nothing else broke.
fn reason_of(recovery: &Recovery, revoked: bool) -> &'static str {
    let has = |gap| recovery.broken.iter().any(|(_, g)| *g == gap);
    if has(Gap::Trimmed) {
        "history-trimmed"
    } else if has(Gap::TooMuch) {
        "history-too-long-to-replay"
    } else if has(Gap::Expired) || !revoked {
        "history-expired"
    } else {
        "rooms-not-allowed"
    }
}

/// The session's rooms split into those `identity` may still join and those it may
/// not (a token with a narrower `rooms` claim): recovery re-authorizes like a subscribe.
fn reauthorize(identity: &Identity, session: &mut Session) -> Vec<String> {
    let authenticated = identity.user.is_some();
    let revoked: Vec<String> = session
        .rooms
        .keys()
        .filter(|room| identity.rooms.decide(room, authenticated).is_err())
        .cloned()
        .collect();
    for room in &revoked {
        session.rooms.remove(room);
    }
    revoked
}

/// The session that follows a broken recovery: what broke starts again where the
/// replay was read (the client was told to resync it); what was whole keeps its place.
fn after_break(mut session: Session, recovery: &Recovery, log_end: Offset) -> Session {
    for (room, _) in &recovery.broken {
        match room.as_ref().and_then(|r| session.rooms.get_mut(r)) {
            Some(joined) => *joined = (*joined).max(log_end),
            None => session.connected_at = session.connected_at.max(log_end),
        }
    }
    session.received_through_ms = None;
    session
}

/// In the connect middleware, with history on: gives the socket its pid and, when it
/// asked to recover, what it missed. Returns the rooms to join now (none while a
/// recovery is pending: [`finish`] joins them).
pub(super) async fn prepare<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    history: &HistoryConfig,
    identity: &Identity,
    asked: Asked,
) -> Vec<String> {
    let user_rooms: Vec<String> = identity.user.iter().map(|u| user_room(u)).collect();
    let Some((link, fanout)) = state.started.get().and_then(Started::cluster) else {
        return user_rooms;
    };
    let mut conn = link.connection();
    let keys = &state.keys;
    let asked_pid = asked.pid.filter(|p| session::plausible_pid(p));
    if !receiving(state, &user_rooms).await {
        return not_now(socket, asked_pid);
    }
    let found = match &asked_pid {
        None => None,
        Some(pid) => match session::load(&mut conn, &keys.session(pid)).await {
            Ok(found) => found.filter(|s| s.user == identity.user),
            Err(e) => {
                tracing::warn!(error = %e, "recovery session unreadable: come back later");
                return defer(socket, state, asked_pid.clone());
            }
        },
    };
    let Some((old_pid, mut found)) = asked_pid.clone().zip(found) else {
        start_session(
            socket,
            state,
            &link,
            fresh_session(identity, fanout.last()),
            history,
        )
        .await;
        if asked_pid.is_none() {
            return user_rooms;
        }
        // Asked to recover a session that is gone (expired, ended, lost with Redis, or
        // another user's).
        state.metrics.recovery(Recovered::broken);
        let broken = Broken {
            reason: "session-unknown",
            rooms: None,
            broadcast: true,
            revoked: Vec::new(),
        };
        pend(
            socket,
            Pending::Replay(Replay {
                _permit: None,
                broken: Some(broken),
                replay: Vec::new(),
                rooms: user_rooms,
                log_end: fanout.last(),
            }),
        );
        return Vec::new();
    };
    let permit =
        match tokio::time::timeout(PERMIT_WAIT, state.recoveries.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                tracing::info!(sid = %socket.id, "recovery: no permit in time: come back later");
                return defer(socket, state, Some(old_pid));
            }
        };
    let revoked = reauthorize(identity, &mut found);
    // Received before the history read: what comes after it reaches this node.
    let session_rooms: Vec<String> = found.rooms.keys().cloned().collect();
    if !receiving(state, &session_rooms).await {
        return not_now(socket, Some(old_pid));
    }
    let offset = asked
        .offset
        .as_deref()
        .map(str::parse::<Offset>)
        .transpose();
    let (recovery, log_end) = match offset {
        Err(e) => {
            tracing::info!(sid = %socket.id, error = %e, "recovery with a bad offset: continuity broken");
            let sources = recovery::sources(&found, None);
            (Recovery::all_broken(sources, Gap::Trimmed), fanout.last())
        }
        Ok(offset) => match read(state, &link, history, &found, offset).await {
            Some(read) => read,
            None => return defer(socket, state, Some(old_pid)),
        },
    };
    let mut rooms = user_rooms;
    rooms.extend(found.rooms.keys().cloned());
    let broken = if recovery.complete() && revoked.is_empty() {
        state.metrics.recovery(Recovered::recovered);
        socket.set_recovery_pid(old_pid);
        None
    } else {
        state.metrics.recovery(Recovered::broken);
        // A new pid (the client sees `recovered === false`) and the old session ended.
        // Its allowed rooms carry over.
        if let Err(e) = session::delete(&mut conn, &keys.session(&old_pid)).await {
            tracing::warn!(error = %e, "broken recovery session not deleted (it expires)");
        }
        let next = after_break(found, &recovery, log_end);
        start_session(socket, state, &link, next, history).await;
        Some(broken_event(&recovery, revoked))
    };
    pend(
        socket,
        Pending::Replay(Replay {
            _permit: Some(permit),
            broken,
            replay: recovery.replay,
            rooms,
            log_end,
        }),
    );
    Vec::new()
}

/// With delivery by interest: whether this node now receives every message of `rooms`
/// (see `publish::interest`); always true when every node reads the whole log.
pub(super) async fn receiving(state: &SharedState, rooms: &[String]) -> bool {
    match state.started.get().and_then(|s| s.interest.clone()) {
        Some(interest) => interest.ensure(rooms).await,
        None => true,
    }
}

/// This node cannot receive the socket's rooms now (Redis away): the client is sent away
/// to come back (to this node or another) as [`defer`] does, without counting a recovery.
pub(super) fn not_now<A: Adapter>(socket: &SocketRef<A>, pid: Option<String>) -> Vec<String> {
    tracing::info!(sid = %socket.id, "this node cannot receive the socket's rooms now: the client comes back later");
    send_away(socket, pid)
}

/// Sends the client away to come back later (its transport is cut once CONNECT is out),
/// its session untouched: the CONNECT reply carries the pid it asked with.
fn defer<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    pid: Option<String>,
) -> Vec<String> {
    state.metrics.recovery(Recovered::deferred);
    send_away(socket, pid)
}

/// What [`defer`] and [`not_now`] share: the pid kept for the CONNECT reply, the
/// transport cut once it is out.
fn send_away<A: Adapter>(socket: &SocketRef<A>, pid: Option<String>) -> Vec<String> {
    if let Some(pid) = pid {
        socket.set_recovery_pid(pid);
    }
    pend(socket, Pending::Deferred);
    Vec::new()
}

/// The session's streams read in scripts of at most `history::STREAMS_PER_READ`
/// streams within one replay budget, on the link's connection for bulk reads (publishes
/// do not queue behind a long reply), within [`READ_DEADLINE`]. `None`: Redis did not
/// answer in time (the client comes back later).
async fn read(
    state: &SharedState,
    link: &RedisLink,
    history: &HistoryConfig,
    session: &Session,
    offset: Option<Offset>,
) -> Option<(Recovery, Offset)> {
    let keys = &state.keys;
    let sources = recovery::sources(session, offset);
    let streams: Vec<(StreamKeys, Offset)> = sources
        .iter()
        .map(|s| {
            (
                keys.stream(push_contract::defaults::NAMESPACE, s.room.as_deref()),
                s.after,
            )
        })
        .collect();
    let mut conn = link.bulk_connection();
    let log = keys.log();
    let chunks = async {
        let mut budget = history::REPLAY_BUDGET;
        let mut whole: Option<script::Snapshot> = None;
        let mut spent = false;
        for chunk in streams.chunks(history::STREAMS_PER_READ) {
            if spent {
                // Past the budget: the rest is not read (see `script::READ`).
                if let Some(whole) = &mut whole {
                    whole
                        .streams
                        .extend(chunk.iter().map(|_| script::StreamRead::OverBudget));
                }
                continue;
            }
            let part = script::read(&mut conn, &log, chunk, budget).await?;
            spent = part
                .streams
                .iter()
                .any(|read| matches!(read, script::StreamRead::OverBudget));
            for read in &part.streams {
                if let script::StreamRead::Present { entries, .. } = read {
                    budget.messages = budget.messages.saturating_sub(entries.len());
                    let bytes: usize = entries.iter().map(|(_, m)| m.len()).sum();
                    budget.bytes = budget.bytes.saturating_sub(bytes);
                }
            }
            match &mut whole {
                // The first read's clock and log end stand for all; what later reads
                // found after that end is delivered by the catch-up (see `apply`).
                Some(whole) => whole.streams.extend(
                    part.streams
                        .into_iter()
                        .map(|read| read.until(whole.log_end)),
                ),
                None => whole = Some(part),
            }
        }
        // What is replayed must be on the replicas a 202 waits for: an entry a failover
        // could lose was answered 503, and its retry would reach the client twice.
        if let Some(wait) = state.config.replica_wait() {
            let position = keys.reader_position(&state.config.node_id);
            let acked = script::confirm_replicated(&mut conn, &position, "recovery", wait).await?;
            if acked < wait.replicas {
                return Ok(None);
            }
        }
        redis::RedisResult::Ok(whole)
    };
    match tokio::time::timeout(READ_DEADLINE, chunks).await {
        Ok(Ok(Some(snapshot))) => {
            let end = snapshot.log_end;
            let decided = recovery::decide(
                &sources,
                snapshot,
                history.ttl_ms(),
                session.received_through_ms,
            );
            Some((decided, end))
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "history unreadable: come back later");
            None
        }
        Err(_) => {
            tracing::warn!(deadline = ?READ_DEADLINE, "history read too slow: come back later");
            None
        }
    }
}

fn pend<A: Adapter>(socket: &SocketRef<A>, pending: Pending) {
    // Out of namespace broadcasts until the replay is through (see `finish`).
    socket.join(RECOVERING_ROOM);
    socket.extensions.insert(PendingRecovery {
        pending: Arc::new(Mutex::new(Some(pending))),
        done: Arc::new(tokio::sync::watch::Sender::new(false)),
    });
}

/// Stores `session` under a new pid and gives the socket that pid. Without Redis (or
/// randomness) the socket simply connects without recovery.
async fn start_session<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    link: &RedisLink,
    session: Session,
    history: &HistoryConfig,
) {
    let Some(pid) = session::new_pid() else {
        return;
    };
    let stored = session::store(
        &mut link.connection(),
        &state.keys.session(&pid),
        &session,
        history.session_ttl(),
    )
    .await;
    match stored {
        Ok(()) => {
            socket.set_recovery_pid(pid);
        }
        Err(e) => {
            tracing::warn!(error = %e, "recovery session not stored: this connection cannot recover")
        }
    }
}

/// After CONNECT: tells the client what broke, replays what it missed, then joins its
/// rooms at the node's delivery gate. A socket without a pending recovery is untouched.
pub(super) async fn finish<A: Adapter>(socket: &SocketRef<A>, state: &SharedState) {
    let Some(recovery) = socket.extensions.get::<PendingRecovery>() else {
        return;
    };
    let pending = recovery.pending.lock().ok().and_then(|mut p| p.take());
    match (pending, state.started.get().and_then(|s| s.fanout.clone())) {
        (Some(Pending::Deferred), _) => state.conns.cut(&socket.id.to_string()),
        (Some(Pending::Replay(pending)), Some(fanout)) => {
            apply(socket, state, pending, &fanout).await
        }
        _ => {}
    }
    recovery.done.send_replace(true);
}

/// Every path that wants the client back cuts its transport: the official client then
/// reconnects by itself with its pid and offset (after a socket.io server disconnect it
/// would not), and the socket never stays connected outside its rooms.
fn come_back<A: Adapter>(socket: &SocketRef<A>, state: &SharedState, why: &str) {
    tracing::info!(sid = %socket.id, "recovery: {why}: transport cut, the client reconnects to recover");
    state.conns.cut(&socket.id.to_string());
}

async fn apply<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    pending: Replay,
    fanout: &Fanout,
) {
    if let Some(broken) = &pending.broken {
        tracing::info!(sid = %socket.id, reason = broken.reason, rooms = ?broken.rooms, "recovery: continuity broken");
        let _ = socket.emit(CONTINUITY_BROKEN, broken);
    }
    let mut replayed = 0u64;
    for (offset, wire) in &pending.replay {
        match parse(wire, NAMESPACES) {
            Ok(message) => {
                if !emit_patiently(socket, state, &message, *offset).await {
                    state.metrics.messages_replayed.inc_by(replayed);
                    return;
                }
                replayed += 1;
            }
            Err(e) => tracing::warn!(error = %e, %offset, "invalid history entry: skipped"),
        }
    }
    let cursor = pending.log_end;
    // With delivery by interest, the node's position moves with its rooms' messages or
    // a marker: one sent now brings it past the read.
    if fanout.last() < cursor
        && let Some(interest) = state.started.get().and_then(|s| s.interest.clone())
        && !interest.sync().await
    {
        come_back(socket, state, "this node's room channels are behind");
        return;
    }
    loop {
        let recent = fanout.hold().await;
        if recent.last < cursor {
            // This node has not delivered up to the read yet: joining now would repeat.
            drop(recent);
            if fanout.reached(cursor, CATCH_UP).await {
                continue;
            }
            come_back(socket, state, "this node's log reader is behind");
            return;
        }
        let Some(since) = recent.since(cursor) else {
            // More was delivered meanwhile than the ring holds; the client recovers
            // from what it got so far on its next connect.
            drop(recent);
            come_back(socket, state, "too much delivered during the replay");
            return;
        };
        for (offset, message) in since {
            if addressed_to(message, &pending.rooms) {
                if let Err(e) = emit(socket, message, *offset) {
                    // Under the delivery gate there is no waiting: a client this far
                    // behind recovers again from what it got.
                    tracing::debug!(sid = %socket.id, error = %e, "catch-up write refused");
                    come_back(socket, state, "send buffer full during the catch-up");
                    return;
                }
                replayed += 1;
            }
        }
        state.room_sizes.join(socket, &pending.rooms);
        socket.leave(RECOVERING_ROOM);
        super::presence_events::announce(
            socket,
            state,
            super::presence_events::Change::Join,
            &pending.rooms,
        );
        break;
    }
    state.metrics.messages_replayed.inc_by(replayed);
    if replayed > 0 || pending.broken.is_none() {
        tracing::debug!(sid = %socket.id, replayed, "recovery: replayed");
    }
}

fn addressed_to(message: &Message, rooms: &[String]) -> bool {
    match message.room() {
        None => true,
        Some(room) => rooms.contains(&room),
    }
}

fn emit<A: Adapter>(
    socket: &SocketRef<A>,
    message: &Message,
    offset: Offset,
) -> Result<(), socketioxide::SendError> {
    socket.emit(&message.event, &(&message.data, offset.to_string()))
}

/// A replay can be longer than the send buffer: waits for room while the connection
/// drains it (up to [`CATCH_UP`]); a client that does not read is cut. False: stop.
async fn emit_patiently<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    message: &Message,
    offset: Offset,
) -> bool {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        match emit(socket, message, offset) {
            Ok(()) => {
                // A wait for room is not an overflow: nothing was lost.
                socket.take_buffer_overflow();
                return true;
            }
            Err(socketioxide::SendError::Socket(
                socketioxide::SocketError::InternalChannelFull,
            )) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                tracing::debug!(sid = %socket.id, error = %e, "replay write refused");
                come_back(socket, state, "replay stopped, the client is not reading");
                return false;
            }
        }
    }
}

/// Records rooms a socket subscribed to in its session (from where this node is now).
/// False when the session could not be written: a reconnect may not restore them.
pub(super) async fn joined<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    rooms: &[String],
) -> bool {
    let (Some(history), Some(pid)) = (state.config.history, socket.recovery_pid()) else {
        return true;
    };
    let Some((link, fanout)) = state.started.get().and_then(Started::cluster) else {
        return true;
    };
    let key = state.keys.session(pid);
    match session::joined(
        &mut link.connection(),
        &key,
        rooms,
        fanout.last(),
        history.session_ttl(),
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "recovery session not updated: a recovery may miss these rooms");
            false
        }
    }
}

/// Removes rooms a socket left from its session.
pub(super) async fn left<A: Adapter>(socket: &SocketRef<A>, state: &SharedState, rooms: &[String]) {
    let Some(pid) = socket
        .recovery_pid()
        .filter(|_| state.config.history.is_some())
    else {
        return;
    };
    let Some(link) = state.started.get().and_then(|s| s.link.clone()) else {
        return;
    };
    if let Err(e) = session::left(&mut link.connection(), &state.keys.session(pid), rooms).await {
        tracing::warn!(error = %e, "recovery session not updated: a recovery may rejoin left rooms");
    }
}

/// A socket's end: a client that left on its own (or was sent away for good) ends its
/// session, as socket.io does; one whose transport dropped keeps it for a full TTL, marked
/// received through now (less the heartbeat's window) when it was in its rooms.
/// `live`: whether it was in its rooms (not still recovering), read before the
/// disconnect handler changed anything.
pub(super) async fn departed<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    reason: DisconnectReason,
    live: bool,
) {
    let (Some(history), Some(pid)) = (state.config.history, socket.recovery_pid()) else {
        return;
    };
    let Some(link) = state.started.get().and_then(|s| s.link.clone()) else {
        return;
    };
    let key = state.keys.session(pid);
    let mut conn = link.connection();
    let done = match reason {
        DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
            session::delete(&mut conn, &key).await
        }
        _ => {
            let (live, waiting) = if live {
                (std::slice::from_ref(&key), &[][..])
            } else {
                (&[][..], std::slice::from_ref(&key))
            };
            session::keep(
                &mut conn,
                live,
                waiting,
                received_grace(&state.config),
                history.session_ttl(),
            )
            .await
        }
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, "recovery session not updated at disconnect");
    }
}

/// Refreshes the sessions of this node's sockets, marking those in their rooms as
/// received through now (less the heartbeat's window), often enough that a client away
/// for a moment is judged by that, and that a socket connected for longer than the TTL
/// can still recover.
pub async fn keep_sessions(
    link: RedisLink,
    keys: Keys,
    history: HistoryConfig,
    grace: Duration,
    sockets: Arc<dyn NodeSockets>,
    stop: CancellationToken,
) {
    let period = (history.ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let (live, waiting): (Vec<_>, Vec<_>) = sockets
            .recovery_pids()
            .into_iter()
            .partition(|(_, live)| *live);
        let live: Vec<String> = live.iter().map(|(p, _)| keys.session(p)).collect();
        let waiting: Vec<String> = waiting.iter().map(|(p, _)| keys.session(p)).collect();
        for (live, waiting) in live
            .chunks(1_000)
            .map(|c| (c, &[][..]))
            .chain(waiting.chunks(1_000).map(|c| (&[][..], c)))
        {
            if let Err(e) = session::keep(
                &mut link.connection(),
                live,
                waiting,
                grace,
                history.session_ttl(),
            )
            .await
            {
                tracing::warn!(error = %e, "recovery sessions not refreshed");
                break;
            }
        }
    }
}
