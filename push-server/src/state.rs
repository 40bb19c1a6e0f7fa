//! State shared by the HTTP handlers, the socket handlers and the background tasks.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    adapter::NodeSockets,
    config::Config,
    conn::ConnRegistry,
    history::Keys,
    metrics::Metrics,
    publish::{deliver::NodeDelivery, fanout::Fanout, interest::Interest},
    redis_link::RedisLink,
    room_sizes::RoomSizes,
    shutdown::Shutdown,
    socket::rate::TokenBucket,
};

/// What exists only once socket.io (and Redis, when configured) is up.
pub struct Started {
    pub delivery: Arc<dyn NodeDelivery>,
    pub link: Option<RedisLink>,
    /// The ordered delivery of the fan-out log (with Redis).
    pub fanout: Option<Arc<Fanout>>,
    /// The rooms this node receives, with delivery by interest.
    pub interest: Option<Arc<Interest>>,
    pub sockets: Arc<dyn NodeSockets>,
    /// Joins (`true`) or leaves a room for this node's socket `sid`, as its `subscribe` /
    /// `unsubscribe` would; `None` when the node does not hold it (the Admin UI's actions).
    pub room_change: RoomChange,
}

/// See [`Started::room_change`].
pub type RoomChange = Arc<
    dyn Fn(&str, String, bool) -> Option<futures::future::BoxFuture<'static, ()>> + Send + Sync,
>;

impl Started {
    /// The Redis link and the fan-out log's delivery, which a node has together or not
    /// at all (single node).
    pub fn cluster(&self) -> Option<(RedisLink, Arc<Fanout>)> {
        Some((self.link.clone()?, self.fanout.clone()?))
    }
}

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// This cluster's Redis keys (log, history, recovery sessions).
    pub keys: Keys,
    pub conns: Arc<ConnRegistry>,
    /// Members per room on this node (what a delivery reports as reached).
    pub room_sizes: Arc<RoomSizes>,
    pub started: OnceLock<Started>,
    /// One permit per admitted client-port TCP connection (held by the stream).
    pub admission: Arc<tokio::sync::Semaphore>,
    /// The node's handshake rate (`None`: no limit).
    pub handshakes: Option<std::sync::Mutex<TokenBucket>>,
    /// One permit per recovery whose replay is in memory.
    pub recoveries: Arc<tokio::sync::Semaphore>,
    /// The per-user connection limit's counts (`None`: no limit).
    pub user_slots: Option<crate::user_limit::UserSlots>,
    /// Join/leave events to rooms' members, with their per-room rates (`None`: off).
    pub presence_events: Option<crate::socket::rate::RoomRates>,
    warned_open_rooms: AtomicBool,
}

pub type SharedState = Arc<AppState>;

/// Why a node is not ready, for the /readyz body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Draining,
    /// Moving some clients to the other nodes: new ones should go there too.
    Rebalancing,
    RedisDown,
    /// Near its connection cap: the Service should send new clients elsewhere.
    NearlyFull,
    /// Its fan-out log reader is seconds behind: its clients get messages late.
    Behind,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::Starting => "starting",
            NotReady::Draining => "draining",
            NotReady::Rebalancing => "moving clients to the other nodes (rebalance)",
            NotReady::RedisDown => "redis link down",
            NotReady::NearlyFull => "near the connection cap (PUSH_MAX_CONNECTIONS)",
            NotReady::Behind => "the fan-out log reader is behind",
        }
    }
}

/// Readiness as a pure decision.
pub fn readiness(
    started: bool,
    draining: bool,
    redis: Option<bool>,
    nearly_full: bool,
    behind: bool,
    rebalancing: bool,
) -> Result<(), NotReady> {
    if draining {
        Err(NotReady::Draining)
    } else if rebalancing {
        Err(NotReady::Rebalancing)
    } else if !started {
        Err(NotReady::Starting)
    } else if redis == Some(false) {
        Err(NotReady::RedisDown)
    } else if behind {
        Err(NotReady::Behind)
    } else if nearly_full {
        Err(NotReady::NearlyFull)
    } else {
        Ok(())
    }
}

impl AppState {
    pub fn new(config: Config, shutdown: Shutdown) -> SharedState {
        let metrics = Arc::new(Metrics::new(config.redis.is_some()));
        metrics
            .connection_limit
            .set(i64::try_from(config.max_connections).unwrap_or(i64::MAX));
        let admission = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        let keys = Keys::new(&config.redis_key_prefix);
        let user_slots =
            config
                .max_connections_per_user
                .map(|limit| crate::user_limit::UserSlots {
                    limit,
                    holder: format!(
                        "{}/{}",
                        config.node_id,
                        crate::history::session::new_pid().unwrap_or_default()
                    ),
                    users: keys.user_sockets_prefix(),
                    holders: keys.slot_holders(),
                });
        Arc::new(Self {
            keys,
            user_slots,
            presence_events: config
                .presence_events
                .map(crate::socket::rate::RoomRates::new),
            handshakes: config.handshakes_per_second.map(|rate| {
                std::sync::Mutex::new(TokenBucket::new(rate, rate, std::time::Instant::now()))
            }),
            recoveries: Arc::new(tokio::sync::Semaphore::new(
                crate::history::CONCURRENT_RECOVERIES,
            )),
            admission,
            config,
            metrics,
            shutdown,
            conns: Arc::default(),
            room_sizes: Arc::default(),
            started: OnceLock::new(),
            warned_open_rooms: AtomicBool::new(false),
        })
    }

    /// Takes a handshake from the node's rate (always allowed without a limit).
    pub fn handshake_allowed(&self) -> bool {
        self.handshakes.as_ref().is_none_or(|bucket| {
            bucket
                .lock()
                .map_or(true, |mut b| b.take(std::time::Instant::now()))
        })
    }

    pub fn draining(&self) -> bool {
        self.shutdown.drain.is_cancelled()
    }

    pub fn redis_up(&self) -> Option<bool> {
        self.config
            .redis
            .as_ref()
            .map(|_| self.metrics.redis_up.get() == 1)
    }

    pub fn ready(&self) -> Result<(), NotReady> {
        readiness(
            self.started.get().is_some(),
            self.draining(),
            self.redis_up(),
            self.nearly_full(),
            self.metrics.fanout_lag_ms.get() > crate::publish::log::MAX_LAG_MS,
            self.rebalancing(),
        )
    }

    /// A rebalance is moving clients off (see [`crate::rebalance`]).
    pub fn rebalancing(&self) -> bool {
        self.metrics.rebalancing.get() == 1
    }

    /// 90% of the connection cap in use: report not-ready before refusing anyone.
    pub fn nearly_full(&self) -> bool {
        let max = self.config.max_connections;
        let used = max.saturating_sub(self.admission.available_permits());
        used * 10 >= max * 9
    }

    /// Refreshes the connection gauge from the live sockets (this also sees
    /// polling→websocket upgrades, which have no hook).
    pub fn refresh_connection_gauge(&self) {
        if let Some(started) = self.started.get() {
            // A session moved off lingers until its heartbeat times out (a cut long-poll
            // leaves nothing to notice): it is connected elsewhere already.
            let (websocket, polling) = started
                .sockets
                .count_by_transport(&|id| !self.conns.is_moved_off(id));
            self.metrics.set_connections(websocket, polling);
        }
    }

    /// Logs once that rooms are open to anyone (no JWT, no sessions).
    pub fn warn_open_rooms_once(&self) {
        if !self.warned_open_rooms.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no JWT or session configured: anyone may connect and join any room (development setting)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_decides() {
        let cases = [
            ("ready single node", true, false, None, Ok(())),
            ("ready with redis", true, false, Some(true), Ok(())),
            ("starting", false, false, None, Err(NotReady::Starting)),
            (
                "draining wins",
                true,
                true,
                Some(true),
                Err(NotReady::Draining),
            ),
            (
                "redis down",
                true,
                false,
                Some(false),
                Err(NotReady::RedisDown),
            ),
        ];
        for (name, started, draining, redis, want) in cases {
            assert_eq!(
                readiness(started, draining, redis, false, false, false),
                want,
                "case {name}"
            );
        }
        assert_eq!(
            readiness(true, false, Some(true), true, false, false),
            Err(NotReady::NearlyFull)
        );
        assert_eq!(
            readiness(true, false, Some(true), false, true, false),
            Err(NotReady::Behind)
        );
        assert_eq!(
            readiness(true, false, Some(true), false, false, true),
            Err(NotReady::Rebalancing)
        );
        assert_eq!(
            readiness(true, true, Some(true), true, true, true),
            Err(NotReady::Draining),
            "draining still wins"
        );
    }
}
