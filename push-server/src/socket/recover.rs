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
}

/// Decided in the middleware, applied by [`finish`] once CONNECT is out.
struct Pending {
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

/// Waits until the socket's recovery, if any, is through (at most [`CATCH_UP`] more).
pub(super) async fn settled<A: Adapter>(socket: &SocketRef<A>) {
    if let Some(recovery) = socket.extensions.get::<PendingRecovery>() {
        let mut done = recovery.done.subscribe();
        let _ = tokio::time::timeout(CATCH_UP * 2, done.wait_for(|d| *d)).await;
    }
}

/// The session a socket starts when it does not (or cannot) recover.
fn fresh_session(identity: &Identity, at: Offset) -> Session {
    Session {
        user: identity.user.clone(),
        connected_at: at,
        rooms: BTreeMap::new(),
    }
}

fn broken_event(recovery: &Recovery, reason: &'static str) -> Broken {
    Broken {
        reason,
        rooms: Some(
            recovery
                .broken
                .iter()
                .filter_map(|(r, _)| r.clone())
                .collect(),
        ),
        broadcast: recovery.broken.iter().any(|(r, _)| r.is_none()),
    }
}

/// The event's reason: the gap that explains most (trimmed, then too much, then expired).
fn reason_of(recovery: &Recovery) -> &'static str {
    let has = |gap| recovery.broken.iter().any(|(_, g)| *g == gap);
    if has(Gap::Trimmed) {
        "history-trimmed"
    } else if has(Gap::TooMuch) {
        "history-too-long-to-replay"
    } else {
        "history-expired"
    }
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
    let found = match &asked_pid {
        None => None,
        Some(pid) => match session::load(&mut conn, &keys.session(pid)).await {
            Ok(found) => found.filter(|s| s.user == identity.user),
            Err(e) => {
                tracing::warn!(error = %e, "recovery session unreadable: continuity broken");
                None
            }
        },
    };
    let Some((old_pid, found)) = asked_pid.clone().zip(found) else {
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
        // Asked to recover a session that is gone (expired, lost with Redis, or another
        // user's).
        state.metrics.recovery(Recovered::broken);
        let broken = Broken {
            reason: "session-unknown",
            rooms: None,
            broadcast: true,
        };
        pend(
            socket,
            Pending {
                _permit: None,
                broken: Some(broken),
                replay: Vec::new(),
                rooms: user_rooms,
                log_end: fanout.last(),
            },
        );
        return Vec::new();
    };
    let permit = state.recoveries.clone().acquire_owned().await.ok();
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
        Ok(offset) => read(&mut conn, keys, history, &found, offset, &fanout).await,
    };
    let mut rooms = user_rooms;
    rooms.extend(found.rooms.keys().cloned());
    let broken = if recovery.complete() {
        state.metrics.recovery(Recovered::recovered);
        socket.set_recovery_pid(old_pid);
        None
    } else {
        state.metrics.recovery(Recovered::broken);
        // A new pid: the client sees `recovered === false`. Its rooms carry over.
        start_session(socket, state, &link, found, history).await;
        Some(broken_event(&recovery, reason_of(&recovery)))
    };
    pend(
        socket,
        Pending {
            _permit: permit,
            broken,
            replay: recovery.replay,
            rooms,
            log_end,
        },
    );
    Vec::new()
}

/// One atomic read of the session's streams, decided; a failed read breaks them all.
async fn read(
    conn: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    history: &HistoryConfig,
    session: &Session,
    offset: Option<Offset>,
    fanout: &Fanout,
) -> (Recovery, Offset) {
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
    match script::read(
        conn,
        &keys.log(),
        &streams,
        history.max_messages,
        history::REPLAY_BUDGET,
    )
    .await
    {
        Ok(snapshot) => {
            let end = snapshot.log_end;
            (recovery::decide(&sources, snapshot, history.ttl_ms()), end)
        }
        Err(e) => {
            tracing::warn!(error = %e, "history unreadable: continuity broken");
            (Recovery::all_broken(sources, Gap::Expired), fanout.last())
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
    if let (Some(pending), Some(fanout)) =
        (pending, state.started.get().and_then(|s| s.fanout.clone()))
    {
        apply(socket, state, pending, &fanout).await;
    }
    recovery.done.send_replace(true);
}

async fn apply<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    pending: Pending,
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
    loop {
        let recent = fanout.hold().await;
        if recent.last < cursor {
            // This node has not delivered up to the read yet: joining now would repeat.
            drop(recent);
            if fanout.reached(cursor, CATCH_UP).await {
                continue;
            }
            tracing::warn!(sid = %socket.id, "recovery: this node's log reader is behind: reconnect to recover");
            let _ = socket.clone().disconnect();
            return;
        }
        let Some(since) = recent.since(cursor) else {
            // More was delivered meanwhile than the ring holds; the client recovers
            // from what it got so far on its next connect.
            drop(recent);
            tracing::warn!(sid = %socket.id, "recovery: too much delivered during the replay: reconnect to recover");
            let _ = socket.clone().disconnect();
            return;
        };
        for (offset, message) in since {
            if addressed_to(message, &pending.rooms) {
                if let Err(e) = emit(socket, message, *offset) {
                    // Under the delivery gate there is no waiting: a client this far
                    // behind recovers again from what it got.
                    tracing::info!(sid = %socket.id, error = %e, "recovery: send buffer full during catch-up: reconnect to recover");
                    state.conns.cut(&socket.id.to_string());
                    return;
                }
                replayed += 1;
            }
        }
        state.room_sizes.join(socket, &pending.rooms);
        socket.leave(RECOVERING_ROOM);
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
                tracing::info!(sid = %socket.id, error = %e, "replay stopped: the client is not reading");
                state.conns.cut(&socket.id.to_string());
                return false;
            }
        }
    }
}

/// Records rooms a socket subscribed to in its session (from where this node is now).
pub(super) async fn joined<A: Adapter>(
    socket: &SocketRef<A>,
    state: &SharedState,
    rooms: &[String],
) {
    let (Some(history), Some(pid)) = (state.config.history, socket.recovery_pid()) else {
        return;
    };
    let Some((link, fanout)) = state.started.get().and_then(Started::cluster) else {
        return;
    };
    let key = state.keys.session(pid);
    if let Err(e) = session::joined(
        &mut link.connection(),
        &key,
        rooms,
        fanout.last(),
        history.session_ttl(),
    )
    .await
    {
        tracing::warn!(error = %e, "recovery session not updated: a recovery may miss these rooms");
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

/// Keeps a departed socket's session for a full TTL from now.
pub(super) async fn departed<A: Adapter>(socket: &SocketRef<A>, state: &SharedState) {
    let (Some(history), Some(pid)) = (state.config.history, socket.recovery_pid()) else {
        return;
    };
    let Some(link) = state.started.get().and_then(|s| s.link.clone()) else {
        return;
    };
    let _ = session::refresh(
        &mut link.connection(),
        &[state.keys.session(pid)],
        history.session_ttl(),
    )
    .await;
}

/// Refreshes the sessions of this node's live sockets every third of the TTL, so a
/// socket connected for longer than the TTL can still recover.
pub async fn keep_sessions(
    link: RedisLink,
    keys: Keys,
    history: HistoryConfig,
    sockets: Arc<dyn NodeSockets>,
    stop: CancellationToken,
) {
    let period = (history.session_ttl() / 3).min(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let session_keys: Vec<String> = sockets
            .recovery_pids()
            .iter()
            .map(|p| keys.session(p))
            .collect();
        for chunk in session_keys.chunks(1_000) {
            if let Err(e) =
                session::refresh(&mut link.connection(), chunk, history.session_ttl()).await
            {
                tracing::warn!(error = %e, "recovery sessions not refreshed");
                break;
            }
        }
    }
}
