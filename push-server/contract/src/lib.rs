//! The contract between `push-server`, `push-operator` and the tests.
//!
//! Every name that one side writes and another side reads lives here, once:
//! environment variables, ports, HTTP paths, metric names, Kubernetes labels
//! and the publish message shape. Change a name here and both binaries (and
//! the Rust tests) follow; the Python/Node e2e suites read the same values
//! from the committed `e2e/contract.json`, rendered by [`json::contract_json`] (a test
//! fails while it is stale: `UPDATE_CONTRACT_JSON=1 cargo test -p push-contract`).

use serde::{Deserialize, Serialize};

/// The constants as JSON for the e2e suites (it reads this file's modules: not
/// re-exported here, so the two files do not import each other).
pub mod json;

/// Environment variables `push-server` reads (each also a `--flag`).
pub mod env {
    /// The client listener (socket.io, and the demo page when [`DEMO_PAGE`] is on),
    /// `HOST:PORT`: what routes, Ingresses and LoadBalancers expose.
    pub const LISTEN: &str = "PUSH_LISTEN";
    /// The server listener, `HOST:PORT`: the publish API backends call, `/metrics`,
    /// `/healthz`, `/readyz`. Kept apart from [`LISTEN`] so exposing the client port never
    /// exposes the publish API or the metrics.
    pub const ADMIN_LISTEN: &str = "PUSH_ADMIN_LISTEN";
    /// `true`: the client port also serves the demo page (`/`) and its client bundle.
    pub const DEMO_PAGE: &str = "PUSH_DEMO_PAGE";
    /// Where to write `{"client": "HOST:PORT", "admin": "HOST:PORT"}` once both listeners
    /// are bound: how a supervisor learns the ports a `:0` listener got (no race with
    /// another process between picking a free port and binding it).
    pub const ADDRESS_FILE: &str = "PUSH_ADDRESS_FILE";
    /// Node identity in logs and metrics; defaults to the hostname (the pod name).
    pub const NODE_ID: &str = "PUSH_NODE_ID";
    /// Redis URL; absent = single node with the in-memory adapter.
    pub const REDIS_URL: &str = "PUSH_REDIS_URL";
    /// Redis password, merged into [`REDIS_URL`] (comes from a Secret in Kubernetes).
    pub const REDIS_PASSWORD: &str = "PUSH_REDIS_PASSWORD";
    /// PEM file of the CA certificates a `rediss://` Redis (and its Sentinels) must be
    /// signed by; unset = the public roots (Mozilla's, built in).
    pub const REDIS_CA_FILE: &str = "PUSH_REDIS_CA_FILE";
    /// Comma-separated `host:port` of Redis Sentinels: the node asks them for the primary
    /// of [`REDIS_SENTINEL_MASTER`] and follows it through failovers, without a restart.
    /// [`REDIS_URL`] then only gives the user and db; its host is not used.
    pub const REDIS_SENTINELS: &str = "PUSH_REDIS_SENTINELS";
    /// The name the Sentinels monitor the primary under.
    pub const REDIS_SENTINEL_MASTER: &str = "PUSH_REDIS_SENTINEL_MASTER";
    /// Comma-separated `host:port` of Redis Cluster seed nodes: every key of the push
    /// cluster carries the hash tag `{<REDIS_CHANNEL>}` (one slot), and the node uses the
    /// primary owning that slot, following it through the cluster's own failovers.
    /// [`REDIS_URL`] then only gives the user (db must be 0); its host is not used.
    pub const REDIS_CLUSTER: &str = "PUSH_REDIS_CLUSTER";
    /// Replicas that must have a message before the publish API answers 202 (Redis
    /// `WAIT`, for up to [`REDIS_TIMEOUT_MS`] more): with 1, a failover to a replica loses
    /// nothing answered 202. 0 = do not wait.
    pub const REDIS_MIN_REPLICAS: &str = "PUSH_REDIS_MIN_REPLICAS";
    /// Redis pub/sub channel other systems publish to.
    pub const REDIS_CHANNEL: &str = "PUSH_REDIS_CHANNEL";
    /// How nodes receive the cluster's messages: `log` (default: every node reads the
    /// whole fan-out log) or `interest` (each node subscribes to the rooms its sockets are
    /// in). Every append is published on its room's channel in both modes, so a rolling
    /// update from one to the other loses nothing.
    pub const FANOUT: &str = "PUSH_FANOUT";
    /// How long a publish waits for Redis before answering 503 (milliseconds).
    pub const REDIS_TIMEOUT_MS: &str = "PUSH_REDIS_TIMEOUT_MS";
    /// Bearer token of the publish API; unset = API disabled.
    pub const API_TOKEN: &str = "PUSH_API_TOKEN";
    /// HS256 secret; when set every connection must carry a valid JWT.
    pub const JWT_SECRET: &str = "PUSH_JWT_SECRET";
    /// PEM public key file (RS256 or ES256); when set every connection must carry a valid JWT.
    pub const JWT_PUBLIC_KEY_FILE: &str = "PUSH_JWT_PUBLIC_KEY_FILE";
    /// Optional expected `iss` claim.
    pub const JWT_ISSUER: &str = "PUSH_JWT_ISSUER";
    /// Optional expected `aud` claim.
    pub const JWT_AUDIENCE: &str = "PUSH_JWT_AUDIENCE";
    /// Largest accepted message (publish body, polling body, WebSocket frame).
    pub const MAX_PAYLOAD_BYTES: &str = "PUSH_MAX_PAYLOAD_BYTES";
    /// Room requests (`subscribe` / `unsubscribe`) one socket may send per second.
    pub const EVENTS_PER_SECOND: &str = "PUSH_EVENTS_PER_SECOND";
    /// How many room requests one socket may send at once before the rate applies.
    pub const EVENT_BURST: &str = "PUSH_EVENT_BURST";
    /// Most client-port TCP connections this node holds (0 = its open-file limit minus a
    /// reserve kept for the admin port, Redis and the publish API, and under a container
    /// memory limit no more than `(limit - MEMORY_RESERVE_BYTES) / MEMORY_PER_CONNECTION_BYTES`).
    pub const MAX_CONNECTIONS: &str = "PUSH_MAX_CONNECTIONS";
    /// Most sockets one user (JWT `sub` or session user) has across the cluster; 0 = no
    /// limit.
    pub const MAX_CONNECTIONS_PER_USER: &str = "PUSH_MAX_CONNECTIONS_PER_USER";
    /// New socket.io sessions (handshakes) this node starts per second; beyond, a
    /// handshake is answered 503 + Retry-After, so a reconnect storm is spread over time
    /// instead of absorbed at once (0 = no limit). Bursts up to a second's worth.
    pub const HANDSHAKES_PER_SECOND: &str = "PUSH_HANDSHAKES_PER_SECOND";
    /// Seconds a client connection may take to send its request head (slowloris, idle
    /// connections that never speak are closed after this).
    pub const HEADER_TIMEOUT_SECONDS: &str = "PUSH_HEADER_TIMEOUT_SECONDS";
    /// Engine.IO heartbeat: the server PINGs every this many ms (the first one too)...
    pub const PING_INTERVAL_MS: &str = "PUSH_PING_INTERVAL_MS";
    /// ...and closes a session whose PONG has not come within this many ms.
    pub const PING_TIMEOUT_MS: &str = "PUSH_PING_TIMEOUT_MS";
    /// A WebSocket's write window in milliseconds: a message queued within it after the
    /// socket's last write waits until it ends, so that those queued meanwhile share one
    /// write; a socket that wrote nothing within it writes at once (0, the default: every
    /// message at once).
    pub const WRITE_WINDOW_MS: &str = "PUSH_WRITE_WINDOW_MS";
    /// Window over which clients are moved off on SIGTERM.
    pub const DRAIN_SECONDS: &str = "PUSH_DRAIN_SECONDS";
    /// Milliseconds a draining node waits, refusing new sessions and not ready, before it
    /// moves the first client: the time the Service takes to stop routing to it and to
    /// every other pod removed with it, so a moved client reconnects to a pod that stays.
    pub const DRAIN_SETTLE_MS: &str = "PUSH_DRAIN_SETTLE_MS";
    /// Messages queued for one socket beyond what its connection takes; a socket whose
    /// queue overflows is disconnected (it stopped reading) and recovers on reconnect.
    pub const SEND_BUFFER_MESSAGES: &str = "PUSH_SEND_BUFFER_MESSAGES";
    /// Messages kept per room, per user and for namespace broadcasts, so a client that
    /// reconnects (to any node) gets what it missed; 0 = history off (no offsets, no
    /// recovery: a reconnecting client misses what was published meanwhile).
    pub const HISTORY_MAX_MESSAGES: &str = "PUSH_HISTORY_MAX_MESSAGES";
    /// Seconds a message stays in history; a client away longer gets broken continuity.
    pub const HISTORY_TTL_SECONDS: &str = "PUSH_HISTORY_TTL_SECONDS";
    /// express-session cookie-signing secret; set = shared-session mode on.
    pub const SESSION_SECRET: &str = "PUSH_SESSION_SECRET";
    /// express-session cookie name.
    pub const SESSION_COOKIE: &str = "PUSH_SESSION_COOKIE";
    /// connect-redis key prefix.
    pub const SESSION_PREFIX: &str = "PUSH_SESSION_PREFIX";
    /// Dotted JSON path of the user id inside the stored session.
    pub const SESSION_USER_PATH: &str = "PUSH_SESSION_USER_PATH";
    /// The application's HTTP endpoint client events are handed to (`http://` or
    /// `https://`); unset = no client event goes to a backend.
    pub const BACKEND_URL: &str = "PUSH_BACKEND_URL";
    /// Key of the HMAC-SHA256 signature on every request to the backend
    /// (`X-Pushcluster-Signature: t=<unix seconds>,v1=<hex of HMAC(key, "<t>.<body>")>`).
    pub const BACKEND_SECRET: &str = "PUSH_BACKEND_SECRET";
    /// The client events handed to the backend (comma-separated names).
    pub const BACKEND_EVENTS: &str = "PUSH_BACKEND_EVENTS";
    /// Those of them the backend may receive twice (retried once on a failure that may
    /// not have reached it: a connection error, 502, 503, 504).
    pub const BACKEND_IDEMPOTENT_EVENTS: &str = "PUSH_BACKEND_IDEMPOTENT_EVENTS";
    /// Milliseconds an event's round trip to the backend may take, retry included,
    /// before the client gets an error ack.
    pub const BACKEND_TIMEOUT_MS: &str = "PUSH_BACKEND_TIMEOUT_MS";
    /// Most backend requests one node has in flight; beyond, an event gets an error ack
    /// at once (a slow backend cannot pile up work on the pods).
    pub const BACKEND_MAX_IN_FLIGHT: &str = "PUSH_BACKEND_MAX_IN_FLIGHT";
    /// `true`: a room's members are told when a socket of a user joins or leaves it
    /// (`socket::PRESENCE_JOIN` / `socket::PRESENCE_LEAVE`), live only.
    pub const PRESENCE_EVENTS: &str = "PUSH_PRESENCE_EVENTS";
    /// Presence events one node sends per room per second at most (bursts of twice that);
    /// beyond, they are dropped and counted.
    pub const PRESENCE_EVENTS_PER_SECOND: &str = "PUSH_PRESENCE_EVENTS_PER_SECOND";
    /// The socket.io Admin UI's password (set = the `/admin` namespace is on, for the
    /// official `@socket.io/admin-ui` web app with this username and password).
    pub const ADMIN_UI_PASSWORD: &str = "PUSH_ADMIN_UI_PASSWORD";
    /// The Admin UI's username.
    pub const ADMIN_UI_USERNAME: &str = "PUSH_ADMIN_UI_USERNAME";
    /// `true` (the default): the Admin UI only looks; `false`: it may also disconnect
    /// sockets and make them join or leave rooms.
    pub const ADMIN_UI_READONLY: &str = "PUSH_ADMIN_UI_READONLY";
    /// Directory of the Admin UI's prebuilt web app (`@socket.io/admin-ui`'s `ui/dist`),
    /// served on the client port at `paths::ADMIN_UI`.
    pub const ADMIN_UI_DIR: &str = "PUSH_ADMIN_UI_DIR";
    /// Path of the official socket.io client bundle served to the demo page.
    pub const CLIENT_JS: &str = "PUSH_CLIENT_JS";
    /// Log filter (tracing `EnvFilter` syntax).
    pub const LOG: &str = "PUSH_LOG";
    /// `text` or `json`.
    pub const LOG_FORMAT: &str = "PUSH_LOG_FORMAT";

    /// The variables the operator sets on every push-server pod itself; a PushCluster's
    /// `spec.env` may not override them (the CRD's CEL rule and the Deployment builder
    /// both read this list).
    pub const SET_BY_OPERATOR: &[&str] = &[
        LISTEN,
        ADMIN_LISTEN,
        DEMO_PAGE,
        NODE_ID,
        REDIS_URL,
        REDIS_PASSWORD,
        REDIS_CA_FILE,
        REDIS_SENTINELS,
        REDIS_SENTINEL_MASTER,
        REDIS_CLUSTER,
        REDIS_MIN_REPLICAS,
        API_TOKEN,
        JWT_SECRET,
        JWT_PUBLIC_KEY_FILE,
        JWT_ISSUER,
        JWT_AUDIENCE,
        MAX_PAYLOAD_BYTES,
        DRAIN_SECONDS,
        HISTORY_MAX_MESSAGES,
        HISTORY_TTL_SECONDS,
        MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_USER,
        HANDSHAKES_PER_SECOND,
        HEADER_TIMEOUT_SECONDS,
        SESSION_SECRET,
        SESSION_COOKIE,
        SESSION_PREFIX,
        SESSION_USER_PATH,
        FANOUT,
        WRITE_WINDOW_MS,
        BACKEND_URL,
        BACKEND_SECRET,
        BACKEND_EVENTS,
        BACKEND_IDEMPOTENT_EVENTS,
        BACKEND_TIMEOUT_MS,
        BACKEND_MAX_IN_FLIGHT,
        PRESENCE_EVENTS,
        PRESENCE_EVENTS_PER_SECOND,
        ADMIN_UI_PASSWORD,
        ADMIN_UI_USERNAME,
        ADMIN_UI_READONLY,
        LOG_FORMAT,
    ];
}

/// Default values both sides assume.
pub mod defaults {
    pub const PORT: u16 = 3000;
    pub const ADMIN_PORT: u16 = 9090;
    pub const LISTEN: &str = "0.0.0.0:3000";
    pub const ADMIN_LISTEN: &str = "0.0.0.0:9090";
    pub const DRAIN_SECONDS: u64 = 30;
    /// kube-proxy applies endpoint changes within about a second (its iptables/nftables
    /// `minSyncPeriod` is 1 s); pods removed together see their deletion within that too.
    pub const DRAIN_SETTLE_MS: u64 = 1_000;
    /// Same as socket.io's `maxHttpBufferSize`.
    pub const MAX_PAYLOAD_BYTES: usize = 1_000_000;
    pub const REDIS_CHANNEL: &str = "push:publish";
    /// The name Sentinels monitor a managed Redis's primary under.
    pub const REDIS_SENTINEL_MASTER: &str = "pushcluster";
    pub const HEADER_TIMEOUT_SECONDS: u64 = 10;
    /// A node takes a few thousand handshakes a second on one core; the limit is where
    /// a storm starts hurting the clients already connected.
    pub const HANDSHAKES_PER_SECOND: u32 = 1_000;
    /// socket.io's `pingInterval` and `pingTimeout` defaults.
    pub const PING_INTERVAL_MS: u64 = 25_000;
    pub const PING_TIMEOUT_MS: u64 = 20_000;
    /// File descriptors kept out of the client port's reach (admin port, Redis, logs).
    pub const FD_RESERVE: usize = 256;
    /// Memory kept out of the connections' reach under a container memory limit: the
    /// process itself, Redis buffers, history reads.
    pub const MEMORY_RESERVE_BYTES: u64 = 32 * 1024 * 1024;
    /// What one connection may take under a memory limit: an idle one costs about
    /// 6.5 KiB (release build), the rest is room for queued frames.
    pub const MEMORY_PER_CONNECTION_BYTES: u64 = 16 * 1024;
    pub const EVENTS_PER_SECOND: u32 = 20;
    pub const EVENT_BURST: u32 = 40;
    /// A publish answers 503 after this long without Redis (hundreds of ms, not seconds).
    pub const REDIS_TIMEOUT_MS: u64 = 500;
    /// How long a backend event's round trip may take, retry included.
    pub const BACKEND_TIMEOUT_MS: u64 = 5_000;
    /// Backend requests one node has in flight at most.
    pub const BACKEND_MAX_IN_FLIGHT: usize = 64;
    /// Presence events per room per second one node sends at most.
    pub const PRESENCE_EVENTS_PER_SECOND: u32 = 10;
    pub const SESSION_COOKIE: &str = "connect.sid";
    pub const SESSION_PREFIX: &str = "sess:";
    pub const SESSION_USER_PATH: &str = "passport.user";
    pub const NAMESPACE: &str = "/";
    /// Above a burst of the fan-out log's reads (128) with room to spare; the messages
    /// of a broadcast are shared, not copied per socket.
    pub const SEND_BUFFER_MESSAGES: usize = 1_024;
    /// A PushCluster's history when its spec says nothing: on, 1,000 messages per room
    /// for up to 5 minutes (the push-server binary alone defaults to off).
    pub const HISTORY_MAX_MESSAGES: u32 = 1_000;
    pub const HISTORY_TTL_SECONDS: u32 = 300;
}

/// HTTP paths.
pub mod paths {
    pub const SOCKET_IO: &str = "/socket.io/";
    pub const PUBLISH: &str = "/api/v1/publish";
    /// The Admin UI web app on the client port (with `PUSH_ADMIN_UI_PASSWORD` and its
    /// files found).
    pub const ADMIN_UI: &str = "/admin-ui/";
    /// Server port, bearer token: move some of this node's clients to the others.
    pub const REBALANCE: &str = "/api/v1/rebalance";
    /// Server port, bearer token: end a user's sockets, or one socket, on every node.
    pub const DISCONNECT: &str = "/api/v1/disconnect";
    /// Server port, bearer token: a room's sockets and users, cluster-wide
    /// (`?after=&limit=` pages the users).
    pub const ROOM_PRESENCE: &str = "/api/v1/rooms/{room}/presence";
    /// Server port, bearer token: how many sockets a user has, cluster-wide.
    pub const USER_PRESENCE: &str = "/api/v1/users/{user}/presence";
    pub const METRICS: &str = "/metrics";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
}

/// Prometheus metric names as they appear in the text exposition
/// (counters carry the `_total` suffix there).
pub mod metrics {
    /// Gauge, label [`TRANSPORT`]: live socket.io connections on this node.
    /// The autoscaler sums it over transports.
    pub const CONNECTIONS: &str = "push_connections";
    /// Gauge: the connections this node admits at once (`PUSH_MAX_CONNECTIONS`, or what
    /// its open-file and memory limits allow); it reports not-ready at 90 % of it.
    pub const CONNECTION_LIMIT: &str = "push_connection_limit";
    /// Label of [`CONNECTIONS`]: `websocket` or `polling`.
    pub const TRANSPORT: &str = "transport";
    /// Counter: messages written to client sockets.
    pub const MESSAGES_DELIVERED: &str = "push_messages_delivered_total";
    /// Counter, labels `source` (`http`, `redis`, `client`, `backend`) and `result`.
    pub const PUBLISH_REQUESTS: &str = "push_publish_requests_total";
    /// Histogram: publish accepted → written to local sockets, seconds.
    pub const PUBLISH_LATENCY: &str = "push_publish_delivery_latency_seconds";
    /// Gauge 1/0: Redis link state (absent in single-node mode).
    pub const REDIS_UP: &str = "push_redis_up";
    /// Gauge 1/0: this node is draining.
    pub const DRAINING: &str = "push_draining";
    /// Counter: new socket.io sessions refused (503) over the node's handshake rate.
    pub const HANDSHAKES_REFUSED: &str = "push_handshakes_refused_total";
    /// Counter: connections this node moved to the others by a rebalance.
    pub const REBALANCED: &str = "push_rebalanced_connections_total";
    /// Counter: sockets this node ended because the disconnect API asked it to.
    pub const DISCONNECTED_BY_API: &str = "push_disconnected_by_api_total";
    /// Counter: connections this node refused because their user had as many sockets
    /// as `PUSH_MAX_CONNECTIONS_PER_USER` allows.
    pub const USER_LIMIT_REFUSALS: &str = "push_user_limit_refusals_total";
    /// Counter, label `result` (`answered`, `refused`, `failed`, `timeout`, `busy`): client
    /// events this node handed to the backend, and how each ended: answered (2xx),
    /// refused by the backend (4xx), failed (5xx, unreachable, an answer that is not
    /// the documented JSON), timed out, or not sent because the node had
    /// `PUSH_BACKEND_MAX_IN_FLIGHT` requests out already.
    pub const BACKEND_EVENTS: &str = "push_backend_events_total";
    /// Counter, label `result` (`sent`, `dropped`): presence events (join/leave) this
    /// node sent to a room's members, or dropped over the room's rate.
    pub const PRESENCE_EVENTS: &str = "push_presence_events_total";
    /// Histogram: a backend event's round trip (sent → answer read), seconds.
    pub const BACKEND_LATENCY: &str = "push_backend_latency_seconds";
    /// Gauge: 1 while this node moves clients off for a rebalance.
    pub const REBALANCING: &str = "push_rebalancing";
    /// Counter, label `result` (`recovered`, `broken`): reconnecting clients that asked
    /// to recover their session, and whether everything they missed was still there.
    pub const RECOVERIES: &str = "push_recoveries_total";
    /// Histogram: length of the history stream a message was appended to (after its
    /// trimming): how full the rooms' histories run against `maxMessages`.
    pub const HISTORY_LENGTH: &str = "push_history_stream_length";
    /// Counter: messages written to recovering clients from history.
    pub const MESSAGES_REPLAYED: &str = "push_messages_replayed_total";
    /// Counter, label `reason`: messages a socket did not get because its send buffer
    /// was full (the socket is then disconnected, to recover from history).
    pub const SLOW_CONSUMER_DROPS: &str = "push_slow_consumer_drops_total";
    /// Counter: times this node found a new Redis primary (Sentinel failover) and moved
    /// its connections there.
    pub const REDIS_FAILOVERS: &str = "push_redis_failovers_total";
    /// Gauge 1, label [`ADDRESS`]: the Redis primary this node uses now (`host:port`;
    /// one series, replaced when the node follows a failover).
    pub const REDIS_PRIMARY: &str = "push_redis_primary";
    /// Gauge, Unix seconds: when this node last moved to a new Redis primary (absent
    /// until it did).
    pub const REDIS_LAST_FAILOVER: &str = "push_redis_last_failover_timestamp_seconds";
    /// The label naming an address.
    pub const ADDRESS: &str = "address";
    /// Counter: times this node's fan-out log reader found entries trimmed away before
    /// it read them (it fell behind the log's length); its sockets are then cut, to
    /// recover from history or be told `continuity_broken`.
    pub const FANOUT_GAPS: &str = "push_fanout_gaps_total";
    /// Gauge, seconds: how far this node's fan-out log reader is behind the newest
    /// entry it has seen (0 when it has read everything). The node is not ready past
    /// a few seconds.
    pub const FANOUT_LAG: &str = "push_fanout_lag_seconds";
    /// Gauge: the room channels this node is subscribed to with delivery by interest
    /// (its rooms with members, those released within the last 30 s, and namespace
    /// broadcasts); 0 when it reads the whole fan-out log.
    pub const ROOM_CHANNELS: &str = "push_room_channels";
}

/// Client-facing socket.io event names and rooms.
pub mod socket {
    pub const SUBSCRIBE: &str = "subscribe";
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// Emitted by a client with `{"room", "event", "data"}` and an ack: delivered to the
    /// room like an API publish when the token's `publish` claim allows the room. Ack
    /// `{"offset"}` (`{"delivered"}` without Redis) or `{"error"}`.
    pub const PUBLISH: &str = "publish";
    /// Sent to a room's members (with `PUSH_PRESENCE_EVENTS`) when a socket of a user
    /// joins the room (subscribe, a backend's answer, a reconnect): `{"room", "user"}`.
    /// Live only: not in history, not replayed; one per socket, not per user.
    pub const PRESENCE_JOIN: &str = "presence_join";
    /// Sent to a room's members when a socket of a user leaves it (unsubscribe, a token
    /// refresh, a disconnect): `{"room", "user"}`.
    pub const PRESENCE_LEAVE: &str = "presence_leave";
    /// Emitted by a client with `{"room"}` and an ack, for a room it is in: who else is
    /// there, cluster-wide, as the server API's room presence answers (first 100 users).
    /// Ack `{"sockets", "users", "next", "partial", "nodes", "asked"}` or `{"error"}`.
    pub const PRESENCE: &str = "presence";
    /// The namespace the socket.io Admin UI connects to (with `PUSH_ADMIN_UI_PASSWORD`).
    pub const ADMIN_NAMESPACE: &str = "/admin";
    /// Admin UI sockets one node serves at once; more are refused ("too many admin
    /// connections on this node").
    pub const MAX_ADMINS_PER_NODE: usize = 16;
    /// A JWT's `sub` (or a session's user) puts the socket in `user:<sub>`.
    pub const USER_ROOM_PREFIX: &str = "user:";
    /// Rooms the server keeps for itself; a subscribe to one is refused.
    pub const RESERVED_ROOM_PREFIX: &str = "$push:";
    /// Sent to a socket when its JWT's `exp` passes, `{"reason", "exp"}`, right before
    /// the server disconnects it: reconnect with a fresh token to continue.
    pub const AUTH_EXPIRED: &str = "auth_expired";
    /// Sent to a socket right before the server disconnects it because a backend asked
    /// (the disconnect API), `{"reason"}`: the official client does not reconnect by
    /// itself after a server-side disconnect.
    pub const DISCONNECT_REASON: &str = "disconnect_reason";
    /// Emitted by a client with `{"token"}` and an ack before its JWT's `exp`: the
    /// connection moves to the new token (same subject, later `exp`) without a
    /// reconnect. Ack `{"exp", "left"?}` or `{"error"}`.
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// Sent when a refreshed token no longer allows some of the socket's rooms, which it
    /// has left: `{"rooms", "reason"}`.
    pub const ROOMS_REVOKED: &str = "rooms_revoked";
    /// Sent right after CONNECT to a client that asked to recover (socket.io's
    /// connection state recovery) but cannot get everything it missed:
    /// `{"reason", "rooms", "broadcast", "revoked"}`; `socket.recovered` is false, the
    /// app should resync `rooms` (`null`: every room, the session itself is gone) and
    /// drop `revoked` (rooms its token no longer allows: not rejoined).
    pub const CONTINUITY_BROKEN: &str = "continuity_broken";

    /// The room of one user's connections.
    pub fn user_room(user: &str) -> String {
        format!("{USER_ROOM_PREFIX}{user}")
    }
}

/// How the nodes of one cluster find each other in Redis.
pub mod cluster {
    /// Channel prefix of the socket.io Redis adapter; it subscribes
    /// `<prefix>-request#<namespace>#` (and per-node channels).
    pub const ADAPTER_PREFIX: &str = "pushcluster";
}

/// Kubernetes names shared by the operator, the chart and the tests.
pub mod kube {
    pub const GROUP: &str = "pushcluster.dev";
    pub const VERSION: &str = "v1alpha1";
    pub const KIND: &str = "PushCluster";
    /// Server-side-apply field manager of the operator.
    pub const FIELD_MANAGER: &str = "pushcluster-operator";

    pub const LABEL_NAME: &str = "app.kubernetes.io/name";
    pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
    pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
    pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";

    pub const APP_NAME: &str = "pushcluster";
    pub const COMPONENT_SERVER: &str = "push-server";
    pub const COMPONENT_REDIS: &str = "redis";
    pub const COMPONENT_REDIS_SENTINEL: &str = "redis-sentinel";
    pub const MANAGED_BY: &str = "pushcluster-operator";

    /// Pod template annotation: hash of config + referenced secrets; a change rolls the pods.
    pub const ANNOTATION_CONFIG_HASH: &str = "pushcluster.dev/config-hash";
    /// Set on scale-in victims just before the replica count drops.
    pub const ANNOTATION_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
}

/// `push-operator run` as the Helm chart deploys it: the env vars the chart
/// sets (each also a `--flag`) and the operator's admin port.
pub mod operator {
    pub mod env {
        /// Pod name from the downward API: the leader-election holder identity.
        pub const POD_NAME: &str = "POD_NAME";
        /// Pod namespace from the downward API: where the leader-election Lease lives.
        pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
        /// Comma-separated namespaces to watch; unset or empty = all namespaces.
        pub const WATCH_NAMESPACES: &str = "PUSH_OPERATOR_WATCH_NAMESPACES";
        /// Name of the leader-election Lease (in [`POD_NAMESPACE`]); unset = no
        /// leader election (a single replica acts alone).
        pub const LEASE_NAME: &str = "PUSH_OPERATOR_LEASE_NAME";
        /// Admin listener (`/metrics`, `/healthz`, `/readyz`), `HOST:PORT`.
        pub const ADMIN_LISTEN: &str = "PUSH_OPERATOR_ADMIN_LISTEN";
        /// Log filter (tracing `EnvFilter` syntax).
        pub const LOG: &str = "PUSH_OPERATOR_LOG";
        /// `text` or `json`.
        pub const LOG_FORMAT: &str = "PUSH_OPERATOR_LOG_FORMAT";
        /// The push-server image of clusters without `spec.image`.
        pub const PUSH_SERVER_IMAGE: &str = "PUSH_OPERATOR_PUSH_SERVER_IMAGE";
        /// Seconds between one cluster's operator-caused rollout ending and the next one
        /// starting.
        pub const CLUSTER_ROLLOUT_DELAY_SECONDS: &str =
            "PUSH_OPERATOR_CLUSTER_ROLLOUT_DELAY_SECONDS";
    }
    pub const ADMIN_PORT: u16 = 8080;
    pub const ADMIN_LISTEN: &str = "0.0.0.0:8080";
    /// Default Lease name the chart uses.
    pub const LEASE_NAME: &str = "pushcluster-operator";
}

/// `push-operator local`'s interface to the people and tests that run it: the lines
/// it prints on stdout, the node phases of its `--state-file` snapshot, and its
/// autoscaler's step period and log line.
pub mod local_mode {
    /// Stdout line once every initial node is ready and the front door answers:
    /// `endpoint: http://HOST:PORT`.
    pub const ENDPOINT_PREFIX: &str = "endpoint: ";
    /// Stdout line right after it: where backends publish (the nodes' server ports, never
    /// the client endpoint): `api-endpoint: http://HOST:PORT`.
    pub const API_ENDPOINT_PREFIX: &str = "api-endpoint: ";
    /// Stdout line with the publish API token local mode generated (at start, and
    /// again when a manifest edit generates a new one): `api-token: TOKEN`.
    pub const API_TOKEN_PREFIX: &str = "api-token: ";
    /// `nodes[].phase` in the state file: started, not ready yet.
    pub const PHASE_STARTING: &str = "starting";
    /// Ready and routed by nginx.
    pub const PHASE_READY: &str = "ready";
    /// Leaving (scale-in or replacement): its clients move over the drain window.
    pub const PHASE_DRAINING: &str = "draining";
    /// Exited; restarted after a backoff.
    pub const PHASE_CRASHED: &str = "crashed";
    /// Step period of the local autoscaler, in milliseconds.
    pub const STEP_INTERVAL_MS: u64 = 1000;
    /// Message of the autoscaler's log line, written when its decision (or what it
    /// could measure) changes: `autoscale step: <reason>`, the reason starting with
    /// its verb (`scale up 1 -> 3: recommended 3 (...)`); the fields below follow.
    pub const STEP_MESSAGE: &str = "autoscale step";
    /// The log line of a rebalance request local mode sent a node (fields `node`,
    /// `moving`, `window_seconds`).
    pub const REBALANCE_MESSAGE: &str = "rebalance: moving clients off";
    /// Field of that line: the recommendation before windows and bounds.
    pub const STEP_RECOMMENDED: &str = "recommended";
    /// Field: the node count asked for.
    pub const STEP_REPLICAS: &str = "replicas";
    /// Field: connections measured in all.
    pub const STEP_CONNECTIONS: &str = "connections";
    /// Field: nodes measured.
    pub const STEP_MEASURED: &str = "measured";
    /// Field: ready nodes that did not answer the scrape.
    pub const STEP_UNMEASURED: &str = "unmeasured";
    /// Field: the nodes to drain first, as a list of names (`["n1", "n2"]`).
    pub const STEP_VICTIMS: &str = "victims";
}

/// Where a publish is addressed. Exactly one target per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishTarget {
    Room(String),
    User(String),
    Broadcast,
}

/// The message shape of `POST /api/v1/publish` and of the Redis publish channel
/// once validated: `{"event", "data", "room"|"user"|"broadcast": true, "namespace"?}`.
/// `D` is how `data` is held: a parsed `serde_json::Value` for clients that build it,
/// the raw JSON text for the server, which forwards it exactly as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest<D = serde_json::Value> {
    pub event: String,
    #[serde(default)]
    pub data: D,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Set by the node that took the publish, on the Redis channel (publish→delivery
    /// latency); ignored in an API body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_us: Option<u64>,
    /// A publisher's key for a message it may send again: within the history TTL (5
    /// minutes with history off) the same key is delivered once and answered with the
    /// first offset. The HTTP API's `Idempotency-Key` header sets it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_room_has_prefix() {
        assert_eq!(socket::user_room("42"), "user:42");
    }

    #[test]
    fn publish_request_round_trips_with_the_documented_shape() {
        let raw = r#"{"event":"news","data":{"a":1},"room":"sports"}"#;
        let req: PublishRequest = serde_json::from_str(raw).expect("valid");
        assert_eq!(req.room.as_deref(), Some("sports"));
        assert!(!req.broadcast);
        assert_eq!(serde_json::to_string(&req).expect("ser"), raw);
    }
}
