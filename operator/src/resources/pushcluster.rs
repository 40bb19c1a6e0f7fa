//! The `PushCluster` custom resource: spec, status, defaults and CEL rules.
//!
//! Doc comments become the CRD's field descriptions (`kubectl explain`).
//! Cross-field constraints are CEL rules so the API server rejects a bad
//! spec with a message the user understands; `kube/cel` lets the unit tests
//! evaluate the very same rules without an API server.

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default push-server image (tag = the operator's own version).
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/pushcluster/push-server:",
    env!("CARGO_PKG_VERSION")
);

/// The push-server image of clusters without `spec.image`: the operator's setting
/// (`PUSH_OPERATOR_PUSH_SERVER_IMAGE`, the chart's `pushServer.image`), set once at
/// start; [`DEFAULT_IMAGE`] otherwise.
static PUSH_SERVER_IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the default push-server image; only the first call counts.
pub fn set_default_push_server_image(image: String) {
    let _ = PUSH_SERVER_IMAGE.set(image);
}

pub fn default_push_server_image() -> &'static str {
    PUSH_SERVER_IMAGE
        .get()
        .map_or(DEFAULT_IMAGE, String::as_str)
}
/// Default image of the operator-managed Redis.
pub const DEFAULT_REDIS_IMAGE: &str = "docker.io/library/redis:7.2-alpine";
pub const DEFAULT_DRAIN_SECONDS: i32 = 30;
pub const MAX_DRAIN_SECONDS: i32 = 3600;

/// A horizontally scaled socket.io push cluster: push-server pods linked by
/// Redis, sticky routing in front, optional autoscaling on live connections.
// Each printcolumn(...) repeats `type_ = "..."`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pushcluster.dev",
    version = "v1alpha1",
    kind = "PushCluster",
    plural = "pushclusters",
    shortname = "pc",
    category = "all",
    namespaced,
    status = "PushClusterStatus",
    derive = "PartialEq",
    doc = "A horizontally scaled socket.io push cluster: push-server pods linked by Redis, sticky routing in front, autoscaling on live connection count.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired push-server replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready push-server replicas"
    ),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections",
        description = "Live socket.io connections across ready pods"
    ),
    printcolumn(
        name = "Recommended",
        type_ = "integer",
        json_path = ".status.autoscaler.recommendedReplicas",
        description = "Replicas the connection autoscaler recommends",
        priority = "1"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "Where clients connect"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.autoscaling) || !self.autoscaling.enabled || (self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)")
        .message("spec.replicas must lie within spec.autoscaling.minReplicas..maxReplicas while autoscaling is enabled")
        .field_path(".replicas")
)]
#[x_kube(validation = reserved_env_rule())]
#[serde(rename_all = "camelCase")]
pub struct PushClusterSpec {
    /// push-server container image. Unset = the operator's default (the chart's
    /// `pushServer.image`): an operator upgrade that brings a new one rolls every such
    /// cluster to it, one cluster at a time (the chart's `rollout.clusterDelaySeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Image pull policy of the push-server container (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Number of push-server pods. Written by `kubectl scale`, an HPA/KEDA (through the
    /// scale subresource) or, when spec.autoscaling.enabled, by the operator itself.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// CPU/memory requests and limits of the push-server container. Default: requests
    /// 100m CPU and 128Mi, a 1Gi memory limit, no CPU limit (an idle connection costs about
    /// 6.5 KiB; unless `admission.maxConnectionsPerPod` is set, a pod admits
    /// (memory limit - 32 MiB) / 16 KiB connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The Redis that links the pods: exactly one of `managed` or `external`.
    #[serde(default)]
    pub redis: RedisSpec,

    /// How clients reach the cluster, with sticky sessions: exactly one of
    /// `gateway`, `ingress` or `service`.
    #[serde(default)]
    pub exposure: ExposureSpec,

    /// Serve the demo page (`/`: connects with the official client, joins rooms, shows what
    /// arrives) on the client port. Off by default on Kubernetes; local mode turns it on
    /// unless set. The publish API is never on the client port: backends call the
    /// `<name>-api` Service, which no route, Ingress or LoadBalancer exposes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_page: Option<bool>,

    /// Secret references for the publish API token, JWT verification and shared sessions.
    #[serde(default)]
    pub auth: AuthSpec,

    /// Voluntary disruptions of the push pods (node drains, evictions): their
    /// PodDisruptionBudget.
    #[serde(default)]
    pub disruption: DisruptionSpec,

    /// Seconds over which a stopping pod moves its clients off (spread, not all at once).
    /// The pod's terminationGracePeriodSeconds is set above it.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_seconds: i32,

    /// Largest accepted message in bytes (publish body, polling body, WebSocket frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 104857600))]
    pub max_payload_bytes: Option<i64>,

    /// Message history, so that clients who reconnect get what they missed. The cluster's
    /// Redis keeps the last `maxMessages` messages of every room, of every user and of
    /// namespace broadcasts, each for at most `ttlSeconds`. A client that reconnects within
    /// those bounds (to any pod, after a pod loss, a drain, a rollout or a network blip) gets
    /// every message it missed, in order, exactly once: the official socket.io client's
    /// connection state recovery, with `socket.recovered === true`. Beyond them, or when
    /// Redis lost its data, it gets `socket.recovered === false` and a `continuity_broken`
    /// event `{reason, rooms}` naming the rooms to resync. Cost: every message is written to
    /// Redis once more for each room, user or broadcast it targets, and Redis holds about
    /// `maxMessages` times the message size per active room. On by default (1000 messages,
    /// 300 seconds).
    #[serde(default)]
    pub history: HistorySpec,

    /// Admission control, which protects the pods from overload and reconnect storms. Each
    /// pod holds at most `maxConnectionsPerPod` client connections (beyond, new TCP
    /// connections are closed at accept) and reports not-ready at 90% of it, so the Service
    /// sends new clients to other pods. Each pod starts at most `handshakesPerSecond` new
    /// socket.io sessions per second (bursts up to a second's worth); beyond, a handshake is
    /// answered 503 with `Retry-After: 1` and the official client retries with its backoff,
    /// so a reconnect storm after a pod loss is spread over seconds instead of absorbed at
    /// once. A connection that has not sent its request head within `headerTimeoutSeconds`
    /// is closed (slowloris, idle sockets). A reserve of file descriptors always keeps
    /// health checks, metrics and the publish API answering. Defaults: the pod's open-file
    /// limit minus that reserve, 1000 handshakes per second, 10 seconds.
    #[serde(default)]
    pub admission: AdmissionSpec,

    /// How messages reach the pods and leave them for the clients: `fanout` chooses
    /// whether each pod receives only its rooms' messages (`interest`, the default: Redis
    /// output and CPU per publish stay flat as pods are added) or every message (`log`);
    /// `writeWindowMs` lets a busy WebSocket batch the messages queued within that many
    /// milliseconds of its last write into one write (0, the default: write at once).
    #[serde(default)]
    pub delivery: DeliverySpec,

    /// Presence: `events: true` tells a room's members when a socket of a user joins or
    /// leaves it (`presence_join` / `presence_leave` `{"room", "user"}`, live only: not in
    /// history, one per socket), at most `eventsPerSecondPerRoom` per room per pod (bursts
    /// of twice that; beyond, dropped and counted). Who is in a room is always answered by
    /// the server API's `GET /api/v1/rooms/{room}/presence`.
    #[serde(default)]
    pub presence: PresenceSpec,

    /// The official socket.io Admin UI (`@socket.io/admin-ui`) against the cluster: the
    /// pods serve the namespace `/admin` (username and password checked at connect) and
    /// the UI's web app at `/admin-ui/` on the client port; it lists every pod with its
    /// sockets and rooms, refreshed every 2 s. Read-only unless `readonly: false`, which
    /// lets it disconnect sockets and make them join or leave rooms (within their tokens'
    /// rooms). Unset: off (never open by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_ui: Option<AdminUiSpec>,

    /// Client events handed to the application's backend: for each event named in
    /// `events`, the pod POSTs `{user, sid, event, data, id}` to `url`, signed with
    /// HMAC-SHA256 (header `X-Pushcluster-Signature: t=<unix seconds>,v1=<hex of
    /// HMAC(key, "<t>.<body>")>`), and the backend's JSON answer `{result, join, leave,
    /// publish}` becomes the client's ack (`{result, joined, left, refused, published}`)
    /// after its joins (within the token's rooms), leaves and publishes are made for that
    /// socket. An error ack `{error}` when the backend refuses (4xx), fails (5xx,
    /// unreachable), does not answer within `timeoutMs`, or the pod already has
    /// `maxInFlightPerPod` requests out (4 per socket). Unset: no event goes to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,

    /// Autoscaling on live connection count, done by the operator. Leave disabled to let
    /// an HPA or KEDA drive the scale subresource instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Extra environment variables for the push-server container (escape hatch). Variables
    /// the operator sets itself cannot be overridden here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Pod-level overrides (scheduling, metadata, service account) for the push-server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// `spec.env` may not name a variable the operator sets itself (the API server refuses it).
fn reserved_env_rule() -> kube::core::cel::Rule {
    // A map, not a list: `in` a map costs the API server's CEL estimate one lookup per
    // variable, `in` a list one comparison per name (26 names went over the budget).
    let names = push_contract::env::SET_BY_OPERATOR
        .iter()
        .map(|name| format!("'{name}': true"))
        .collect::<Vec<_>>()
        .join(", ");
    kube::core::cel::Rule::new(format!(
        "!has(self.env) || self.env.all(e, !(e.name in {{{names}}}))"
    ))
    .message("spec.env: a variable the operator sets itself cannot be overridden; use the matching spec field instead")
    .field_path(".env")
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Which Redis links the push-server pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("spec.redis: set exactly one of managed or external"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// The operator runs Redis for this cluster (StatefulSet, Service, generated password
    /// Secret, NetworkPolicy admitting only this cluster's push pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
    /// Use an existing Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedRedis::default()),
            external: None,
        }
    }
}

/// A Redis the operator provisions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// Redis container image.
    #[serde(default = "default_redis_image")]
    pub image: String,
    /// CPU/memory requests and limits of the Redis container. Unset: requests
    /// `{cpu: 100m, memory: 256Mi}` and a memory limit of 256Mi (never BestEffort, the
    /// first pod a node evicts). Redis gets `maxmemory` at 75 % of the memory limit with
    /// the `noeviction` policy: a full Redis refuses writes (publishes answer 503) instead
    /// of silently evicting history or sessions a client's recovery depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// PriorityClass of the Redis pods (e.g. one above the push pods': losing Redis
    /// costs every client its continuity, losing a push pod only its own clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Keep Redis data on a PersistentVolumeClaim (append-only file). Without it Redis is a
    /// pure pub/sub link and keeps nothing across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<RedisPersistence>,
    /// Redis servers. 1 (the default): one Redis, no failover; while it is down, publishes
    /// are answered 503. 3: a primary and two replicas, watched by three Redis Sentinels
    /// (quorum 2) that promote a replica automatically when the primary fails; push-server
    /// follows the new primary without a restart, and a publish is answered 202 only once
    /// one replica has it too (Redis WAIT), so a failover loses no message answered 202.
    /// Any N from 2 to 7 runs a primary, N-1 replicas and three Sentinels: on Kubernetes
    /// the StatefulSets `<name>-redis` (pods named by the headless Service
    /// `<name>-redis-pods`) and `<name>-redis-sentinel` with its Service; a Redis pod being
    /// deleted while it is the primary has the Sentinels promote a replica first. RedisReady
    /// is True (reason Replicated) once the primary, a replica and two Sentinels are ready.
    /// Changing it between 1 and more recreates the Redis StatefulSet (its Service name
    /// changes) and restarts Redis once.
    #[serde(default = "default_redis_replicas")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,
}

impl Default for ManagedRedis {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            resources: None,
            priority_class_name: None,
            persistence: None,
            replicas: default_redis_replicas(),
        }
    }
}

/// Persistent storage for the managed Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistence {
    /// Volume size, e.g. `1Gi`.
    #[serde(default = "default_persistence_size")]
    pub size: String,
    /// StorageClass of the claim; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the Redis volumes when the PushCluster is deleted: `Retain` (the
    /// default: the claims stay, and a PushCluster of the same name finds its data again)
    /// or `Delete`. Claims of replicas removed by lowering `replicas` are always deleted
    /// (a replica's data is a copy the primary sends again).
    #[serde(default)]
    pub when_deleted: VolumeRetention,
}

/// The fate of a Redis volume (a StatefulSet's `persistentVolumeClaimRetentionPolicy`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum VolumeRetention {
    #[default]
    Retain,
    Delete,
}

impl VolumeRetention {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// An existing Redis: exactly one of `url` (one Redis endpoint), `sentinel` (a primary
/// with replicas whose failover Redis Sentinel runs) or `cluster` (a Redis Cluster).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.url) ? 1 : 0) + (has(self.sentinel) ? 1 : 0) + (has(self.cluster) ? 1 : 0) == 1").message("spec.redis.external: set exactly one of url, sentinel or cluster"))]
#[x_kube(validation = Rule::new("!has(self.tls) || !has(self.url) || self.url.startsWith('rediss://')").message("spec.redis.external.tls needs a rediss:// url"))]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://` URL without the password (host, port, db) of one Redis endpoint;
    /// `rediss://` for TLS (the server's certificate checked against the public roots,
    /// or `tls.caSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^rediss?://[^\s]+$"))]
    pub url: Option<String>,
    /// A Sentinel-managed Redis: the pods ask the Sentinels for the primary and follow it
    /// through a failover without a restart, and a publish is answered 202 only once
    /// `minReplicasToAcknowledge` replicas have it (Redis `WAIT`), so a failover loses
    /// nothing acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<ExternalSentinel>,
    /// A Redis Cluster (cluster mode enabled): every key of this PushCluster carries one
    /// hash tag, so all of them live in one slot; the pods use the primary owning it and
    /// follow it through the cluster's own failover without a restart, and a publish is
    /// answered 202 only once `minReplicasToAcknowledge` of its replicas have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ExternalCluster>,
    /// Secret key holding the Redis password, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// TLS to Redis (and to the Sentinels or every cluster node): present = on. With
    /// `url`, the URL must be `rediss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExternalTls>,
}

/// How the pods check a TLS Redis's certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalTls {
    /// Secret key holding the PEM CA certificate(s) the servers' certificates must chain
    /// to; without it, the public roots (Mozilla's, built into push-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// Redis Sentinels watching the primary the pods use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSentinel {
    /// The Sentinels, `host:port` each (the pods ask the first that answers).
    #[schemars(
        length(min = 1, max = 9),
        inner(regex(pattern = r"^[^\s:/]+:[0-9]{1,5}$"))
    )]
    pub addresses: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> ...`).
    #[schemars(length(min = 1, max = 200))]
    pub master_name: String,
    /// Replicas that must have a message before a publish is answered 202 (0: do not
    /// wait; a failover may then lose messages answered 202).
    #[serde(default = "default_replicas_to_acknowledge")]
    #[schemars(range(min = 0, max = 5))]
    pub min_replicas_to_acknowledge: u32,
}

/// Seed nodes of a Redis Cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Some of the cluster's nodes, `host:port` each (a managed offering's configuration
    /// endpoint is one): the pods ask the first that answers which primary owns the slot.
    #[schemars(
        length(min = 1, max = 9),
        inner(regex(pattern = r"^[^\s:/]+:[0-9]{1,5}$"))
    )]
    pub addresses: Vec<String>,
    /// Replicas of that primary that must have a message before a publish is answered
    /// 202 (0: do not wait; a failover may then lose messages answered 202).
    #[serde(default = "default_replicas_to_acknowledge")]
    #[schemars(range(min = 0, max = 5))]
    pub min_replicas_to_acknowledge: u32,
}

fn default_replicas_to_acknowledge() -> u32 {
    1
}

/// The socket.io Admin UI's access.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUiSpec {
    /// The username the UI's login form takes.
    #[serde(default = "default_admin_ui_username")]
    #[schemars(length(min = 1, max = 200))]
    pub username: String,
    /// Secret key holding the password (at least 8 characters).
    pub password_secret_ref: SecretKeyRef,
    /// Only look (default); `false`: the UI may also disconnect sockets and make them
    /// join or leave rooms.
    #[serde(default = "default_true")]
    pub readonly: bool,
}

fn default_admin_ui_username() -> String {
    "admin".to_owned()
}

/// Join/leave events to rooms' members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSpec {
    /// Send join/leave events (off by default).
    #[serde(default)]
    pub events: bool,
    /// Presence events one pod sends per room per second at most.
    #[serde(default = "default_presence_events_per_second")]
    #[schemars(range(min = 1, max = 10000))]
    pub events_per_second_per_room: i32,
}

impl Default for PresenceSpec {
    fn default() -> Self {
        Self {
            events: false,
            events_per_second_per_room: default_presence_events_per_second(),
        }
    }
}

fn default_presence_events_per_second() -> i32 {
    i32::try_from(push_contract::defaults::PRESENCE_EVENTS_PER_SECOND).unwrap_or(i32::MAX)
}

/// The application endpoint client events are handed to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.events.all(e, self.events.exists_one(f, f.name == e.name))").message("spec.backend.events: each event name once"))]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    /// Where the pods POST the events: usually a Service of the application
    /// (`http://orders.shop.svc:8080/socket-events`); `https://` is checked against the
    /// public roots.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^\s/]+[^\s]*$")
    )]
    pub url: String,
    /// Secret key holding the HMAC-SHA256 key that signs every request; the backend
    /// checks the signature (and that `t` is recent) before trusting a request.
    pub signing_secret_ref: SecretKeyRef,
    /// The client events handed to the backend (the others are not).
    #[schemars(length(min = 1, max = 100))]
    pub events: Vec<BackendEvent>,
    /// Milliseconds an event's round trip (a retry included) may take before the client
    /// gets an error ack.
    #[serde(default = "default_backend_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: i32,
    /// Most requests to the backend one pod has in flight; beyond, an event gets an error
    /// ack at once, so a slow backend cannot pile work up on the pods.
    #[serde(default = "default_backend_max_in_flight")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_in_flight_per_pod: i32,
}

fn default_backend_timeout_ms() -> i32 {
    i32::try_from(push_contract::defaults::BACKEND_TIMEOUT_MS).unwrap_or(i32::MAX)
}

fn default_backend_max_in_flight() -> i32 {
    i32::try_from(push_contract::defaults::BACKEND_MAX_IN_FLIGHT).unwrap_or(i32::MAX)
}

/// One client event handed to the backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(self.name in ['subscribe', 'unsubscribe', 'publish', 'refresh_token', 'presence', 'connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'])").message("spec.backend.events[].name: this event is handled by the pods themselves or reserved by socket.io"))]
#[serde(rename_all = "camelCase")]
pub struct BackendEvent {
    /// The socket.io event name the client emits (no commas, no surrounding spaces).
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[^,\s]([^,]*[^,\s])?$"))]
    pub name: String,
    /// The backend may receive it twice: on a failure that may not have reached the
    /// backend (cannot connect, 502, 503, 504) it is sent once more with the same `id`.
    /// Others are sent once, whatever happens.
    #[serde(default)]
    pub idempotent: bool,
}

/// A key in a Secret of the PushCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The push pods' PodDisruptionBudget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("string(self.maxUnavailable).matches('^([0-9]+|([0-9]|[1-9][0-9]|100)%)$')").message("spec.disruption.maxUnavailable: a number of pods (0 or more) or a percentage such as \"25%\""))]
#[serde(rename_all = "camelCase")]
pub struct DisruptionSpec {
    /// Push pods a drain may take at once: a number, or a percentage of the replicas
    /// (rounded up). Each one taken moves its clients to the others (they recover what
    /// they missed); 0 blocks drains until the budget is raised.
    #[serde(default = "default_max_unavailable")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
}

/// An int-or-string that may not be null (k8s-openapi's own schema allows null, which
/// would not deserialize).
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-int-or-string": true })
}

impl Default for DisruptionSpec {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_max_unavailable() -> k8s_openapi::apimachinery::pkg::util::intstr::IntOrString {
    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)
}

/// On a PushCluster, `"true"` stops every write of the operator and its autoscaler for
/// it (an incident's hands-off switch); removing it resumes.
pub const PAUSED_ANNOTATION: &str = "pushcluster.dev/paused";

impl PushClusterSpec {
    /// `spec.autoscaling.rebalance`, or its defaults without an autoscaling section.
    pub fn rebalance(&self) -> RebalanceSpec {
        self.autoscaling
            .as_ref()
            .map(|a| a.rebalance.clone())
            .unwrap_or_default()
    }

    /// `spec.image`, else the operator's default.
    pub fn push_server_image(&self) -> &str {
        match &self.image {
            Some(image) => image,
            None => default_push_server_image(),
        }
    }
}

impl PushCluster {
    /// Whether it carries the pause annotation (`"true"`; any other value is not a pause).
    pub fn pause_requested(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .map(String::as_str)
            == Some("true")
    }
}

impl PushClusterStatus {
    /// Its condition of `type_`, when that condition's status is True.
    pub fn true_condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    }
}

/// How clients reach the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.gateway) ? 1 : 0) + (has(self.ingress) ? 1 : 0) + (has(self.service) ? 1 : 0) == 1").message("spec.exposure: set exactly one of gateway, ingress or service"))]
#[x_kube(validation = Rule::new("!has(self.tls) || has(self.host)").message("spec.exposure.tls needs spec.exposure.host"))]
#[x_kube(validation = Rule::new("!has(self.gateway) && !has(self.ingress) || has(self.host)").message("spec.exposure.host is required for the gateway and ingress modes"))]
#[x_kube(validation = Rule::new("!has(self.gateway) || !has(self.tls)").message("spec.exposure.tls: TLS terminates on the Gateway listener in gateway mode; configure it on the Gateway").field_path(".tls"))]
#[serde(rename_all = "camelCase")]
pub struct ExposureSpec {
    /// Public host name clients use (required for gateway and ingress): a bare host name,
    /// no scheme, port or path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = r"^[^/: ]+$"))]
    pub host: Option<String>,
    /// TLS for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Gateway API HTTPRoute with cookie session persistence on a parent Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayExposure>,
    /// Ingress with the controller's sticky-session annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExposure>,
    /// Service only, with ClientIP session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceExposure>,
}

impl Default for ExposureSpec {
    fn default() -> Self {
        Self {
            host: None,
            tls: None,
            gateway: None,
            ingress: None,
            service: Some(ServiceExposure::default()),
        }
    }
}

/// TLS settings of the exposure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret of type kubernetes.io/tls holding the certificate for `host`.
    pub secret_name: String,
}

/// HTTPRoute exposure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayExposure {
    /// The Gateway the HTTPRoute attaches to.
    pub parent_ref: GatewayParentRef,
    /// Name of the session-persistence cookie.
    #[serde(default = "default_affinity_cookie")]
    pub cookie_name: String,
}

/// A parent Gateway reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Gateway name.
    pub name: String,
    /// Gateway namespace; the PushCluster's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Ingress exposure.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.controller) || !has(self.affinity) || self.controller != 'traefik' || self.affinity != 'ipHash'").message("spec.exposure.ingress.affinity: ipHash is supported by ingress-nginx only; use cookie with Traefik").field_path(".affinity"))]
#[serde(rename_all = "camelCase")]
pub struct IngressExposure {
    /// IngressClass name.
    #[schemars(length(min = 1))]
    pub class_name: String,
    /// Which controller serves that class; decides the sticky-session annotations.
    #[serde(default)]
    pub controller: IngressController,
    /// How the controller keeps a client on its pod. `ipHash` is ingress-nginx only.
    #[serde(default)]
    pub affinity: IngressAffinity,
    /// Name of the affinity cookie (cookie affinity).
    #[serde(default = "default_affinity_cookie")]
    pub cookie_name: String,
    /// Extra annotations for the Ingress (merged; the operator's sticky annotations win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Supported ingress controllers.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum IngressController {
    /// ingress-nginx (kubernetes/ingress-nginx).
    #[default]
    Nginx,
    /// Traefik's Kubernetes Ingress provider.
    Traefik,
}

/// Sticky-session mechanism.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum IngressAffinity {
    /// A cookie pins the client to its pod (persistent mode on ingress-nginx).
    #[default]
    Cookie,
    /// Consistent hash of the client address (ingress-nginx `upstream-hash-by`).
    IpHash,
}

/// Service-only exposure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExposure {
    /// Service type of the client Service.
    #[serde(default)]
    pub service_type: ServiceType,
    /// ClientIP affinity timeout in seconds.
    #[serde(default = "default_affinity_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub affinity_timeout_seconds: i32,
}

impl Default for ServiceExposure {
    fn default() -> Self {
        Self {
            service_type: ServiceType::default(),
            affinity_timeout_seconds: default_affinity_timeout(),
        }
    }
}

/// Client Service type.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Secret references for authentication. Nothing secret is ever written in the spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Bearer token of the publish API. When unset the operator generates one into the
    /// Secret `<name>-api-token` (key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeyRef>,
    /// Require a JWT on every connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// Accept express-session cookies whose session lives in this cluster's Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionAuth>,
}

/// JWT verification: exactly one of an HS256 secret or an RS256/ES256 public key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.publicKeySecretRef)").message("spec.auth.jwt: set exactly one of secretRef (HS256) or publicKeySecretRef (RS256/ES256)"))]
#[serde(rename_all = "camelCase")]
pub struct JwtAuth {
    /// HS256 shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// PEM public key (RS256 or ES256), mounted into the pods as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<SecretKeyRef>,
    /// Expected `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Expected `aud` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Shared sessions written by express-session + connect-redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAuth {
    /// The express-session cookie-signing secret.
    pub secret_ref: SecretKeyRef,
    /// Session cookie name.
    #[serde(default = "default_session_cookie")]
    pub cookie_name: String,
    /// connect-redis key prefix.
    #[serde(default = "default_session_prefix")]
    pub prefix: String,
    /// Dotted JSON path of the user id inside the session.
    #[serde(default = "default_session_user_path")]
    pub user_path: String,
}

/// What the cluster keeps in Redis for clients that reconnect.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Keep history. false: no history and no recovery; a client that reconnects misses
    /// whatever was published while it was away.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Messages kept per room, per user and for namespace broadcasts; older ones are
    /// dropped. A client that missed more than this in a room cannot recover that room.
    #[serde(default = "default_history_max_messages")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_messages: i32,
    /// Seconds a message stays in history. A client that missed a message older than this
    /// cannot recover: it gets `continuity_broken` for that room instead.
    #[serde(default = "default_history_ttl_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: i32,
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_messages: default_history_max_messages(),
            ttl_seconds: default_history_ttl_seconds(),
        }
    }
}

/// How much load each push-server pod admits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSpec {
    /// Most client connections one pod holds; beyond, new TCP connections are closed at
    /// accept. From 90% of it the pod reports not-ready, so the Service sends new clients
    /// to other pods. 0 (the default): the pod's open-file limit minus a reserve of file
    /// descriptors that keeps health checks, metrics, Redis and the publish API answering,
    /// and no more than fits in the memory limit: (limit - 32 MiB) / 16 KiB (63,488 under
    /// the default 1Gi), so a flood of idle connections is refused, not OOM-killed.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_connections_per_pod: i32,
    /// Most sockets one user (the JWT `sub`, or the session's user) has across the whole
    /// cluster; a handshake beyond is refused with "too many connections for this user".
    /// Approximate: counted in Redis per pod, so a pod that dies stops counting within
    /// about 15 s, and while Redis is unreachable the limit is not enforced. Anonymous
    /// connections are not limited by it. 0 (the default): no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_connections_per_user: i32,
    /// New socket.io sessions (handshakes) one pod starts per second, with bursts up to a
    /// second's worth. Beyond, a handshake is answered 503 with `Retry-After: 1` and the
    /// official client retries with its backoff, so a reconnect storm after a pod loss is
    /// spread over seconds. Connected clients are not affected. 0: no limit.
    #[serde(default = "default_handshakes_per_second")]
    #[schemars(range(min = 0, max = 1000000))]
    pub handshakes_per_second: i32,
    /// Seconds a new connection has to send its request head; one that has not is closed
    /// (slowloris, idle sockets that never speak).
    #[serde(default = "default_header_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub header_timeout_seconds: i32,
}

impl Default for AdmissionSpec {
    fn default() -> Self {
        Self {
            max_connections_per_pod: 0,
            max_connections_per_user: 0,
            handshakes_per_second: default_handshakes_per_second(),
            header_timeout_seconds: default_header_timeout_seconds(),
        }
    }
}

/// How messages reach the pods and leave them for the clients.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// `interest` (default): a pod receives only the rooms its clients are in (and
    /// namespace broadcasts), so Redis's output and the pods' CPU per publish do not grow
    /// with the pod count; a join needs Redis (refused with an error ack while it is
    /// away). `log`: every pod reads the cluster's whole fan-out log, members there or
    /// not (a join while Redis is away is local and catches up later). Offsets, recovery
    /// and gap detection are the same in both; changing it rolls the pods without a loss.
    #[serde(default)]
    pub fanout: Fanout,
    /// A WebSocket's write window in milliseconds: a message queued within this long after
    /// the socket's last write waits until then, so that the messages queued meanwhile go
    /// out in the same write — less CPU per message for sockets receiving many messages a
    /// second, for up to this much added latency; a socket that wrote nothing within the
    /// window writes at once. Long-polling is not affected. 0 (default): no window.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub write_window_ms: i32,
}

/// How the pods receive the cluster's messages (push-server's `PUSH_FANOUT`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Fanout {
    /// Every pod reads the whole fan-out log.
    Log,
    /// Each pod receives its rooms' messages only (the default).
    #[default]
    Interest,
}

impl Fanout {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Interest => "interest",
        }
    }
}

/// Autoscaling on live connection count.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Let the operator scale on connections. When true the operator owns spec.replicas
    /// (written through the scale subresource) and, while an HPA (KEDA creates one) targets
    /// this PushCluster, scales nothing and warns (Event ExternalScalerConflict). Keep false
    /// to let an HPA, KEDA or `kubectl scale` drive the scale subresource: the operator then
    /// never writes spec.replicas. One scaler owns replicas, never two.
    #[serde(default)]
    pub enabled: bool,
    /// Lower bound of replicas.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Upper bound of replicas.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Live connections one pod should carry.
    #[serde(default = "default_target_connections")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: i64,
    /// Scale up only to the lowest recommendation of this window (0 = at once).
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Scale down only to the highest recommendation of this window.
    #[serde(default = "default_scale_down_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// At most this many pods are removed in one scale-in step.
    #[serde(default = "default_max_scale_in_step")]
    #[schemars(range(min = 1, max = 100))]
    pub max_scale_in_step: i32,
    /// Moving clients onto pods that became Ready by a scale-out (also without
    /// `enabled`: the scale-out may come from an HPA or `kubectl scale`).
    #[serde(default)]
    pub rebalance: RebalanceSpec,
}

/// Rebalancing after a scale-out: existing connections stay where they are, so new pods
/// would sit idle until clients churn. Once the new pods are Ready, each pod holding more
/// than its share moves the surplus (its clients reconnect elsewhere and recover what
/// they missed). With cookie affinity the moved clients land on other pods; with client
/// address affinity a client returns to the pod its address maps to, so the spread
/// evens out only as far as the addresses allow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// On by default, also for clusters without `spec.autoscaling`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A pod moves its surplus over this many seconds (after leaving the Service).
    #[serde(default = "default_rebalance_window")]
    #[schemars(range(min = 1, max = 600))]
    pub window_seconds: i32,
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            window_seconds: default_rebalance_window(),
        }
    }
}

fn default_rebalance_window() -> i32 {
    20
}

/// Pod-level overrides for the push-server pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels (the operator's selector labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces the default spread of pods across nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushClusterStatus {
    /// metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current push-server pods (scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Ready push-server pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods, in string form (scale subresource, HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Where clients connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Live connections summed over the pods that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// The connection autoscaler's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// Redis as the operator and the pods see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
    /// Hash of the push pods' template the operator last applied: a different one with an
    /// unchanged spec is the operator's own change (an upgrade), rolled one cluster at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    /// Ready, RedisReady, ExposureReady, Progressing, Degraded (and Paused, True while the
    /// `pushcluster.dev/paused` annotation is "true"). Degraded is True
    /// with reason InvalidSpec, SecretMissing, or PodsUnavailable (pods were all
    /// ready and some no longer are: a crash, a failing probe, a lost node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The Redis topology: the managed pods ready, and what the push pods report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// `host:port` of the primary the push pods use (the one most of them name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Ready redis-server pods of the managed Redis (primary and replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_ready: Option<i32>,
    /// Ready Sentinels of a replicated managed Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels_ready: Option<i32>,
    /// Push pods whose metrics were read and reported a Redis link.
    #[serde(default)]
    pub pods_reporting: i32,
    /// Of those, the pods whose link is up.
    #[serde(default)]
    pub pods_linked: i32,
    /// The latest failover a push pod followed to a new primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// What the connection autoscaler last decided.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// Replicas recommended by the last step (connections / target within min..max), before
    /// the stabilisation windows and the scale-in step limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_replicas: Option<i32>,
    /// Pods whose connection gauge was read in the last step.
    #[serde(default)]
    pub pods_measured: i32,
    /// Ready pods that did not answer in time in the last step.
    #[serde(default)]
    pub pods_unmeasured: i32,
    /// When the operator last changed spec.replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

fn default_replicas() -> i32 {
    2
}
fn default_drain_seconds() -> i32 {
    DEFAULT_DRAIN_SECONDS
}
fn default_true() -> bool {
    true
}
fn default_history_max_messages() -> i32 {
    i32::try_from(push_contract::defaults::HISTORY_MAX_MESSAGES).unwrap_or(i32::MAX)
}
fn default_history_ttl_seconds() -> i32 {
    i32::try_from(push_contract::defaults::HISTORY_TTL_SECONDS).unwrap_or(i32::MAX)
}
fn default_handshakes_per_second() -> i32 {
    i32::try_from(push_contract::defaults::HANDSHAKES_PER_SECOND).unwrap_or(i32::MAX)
}
fn default_header_timeout_seconds() -> i32 {
    i32::try_from(push_contract::defaults::HEADER_TIMEOUT_SECONDS).unwrap_or(i32::MAX)
}
fn default_redis_image() -> String {
    DEFAULT_REDIS_IMAGE.to_string()
}
fn default_redis_replicas() -> i32 {
    1
}
fn default_persistence_size() -> String {
    "1Gi".to_string()
}
fn default_affinity_cookie() -> String {
    "pushcluster-affinity".to_string()
}
fn default_affinity_timeout() -> i32 {
    10800
}
fn default_session_cookie() -> String {
    push_contract::defaults::SESSION_COOKIE.to_string()
}
fn default_session_prefix() -> String {
    push_contract::defaults::SESSION_PREFIX.to_string()
}
fn default_session_user_path() -> String {
    push_contract::defaults::SESSION_USER_PATH.to_string()
}
fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_connections() -> i64 {
    5000
}
fn default_scale_down_window() -> i32 {
    300
}
fn default_max_scale_in_step() -> i32 {
    1
}
