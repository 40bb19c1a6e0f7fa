//! Prometheus metrics, names from the contract.

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use push_contract::metrics as names;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as they appear in the exposition
pub enum Transport {
    websocket,
    polling,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

/// Where a publish came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Source {
    http,
    redis,
    /// A client's `publish` event.
    client,
    /// A backend's answer to a client event (`publish` in it).
    backend,
}

/// What became of a publish.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Handed to Redis (http) or delivered to this node's sockets (redis).
    accepted,
    /// Redis unreachable (down, or no answer within PUSH_REDIS_TIMEOUT_MS): refused with
    /// 503, delivered nowhere.
    redis_unavailable,
    invalid,
    unauthorized,
    too_large,
    disabled,
    /// Redis channel: the node that holds the channel fell so far behind that its
    /// buffer overflowed; the oldest messages were dropped.
    buffer_full,
    /// On the Redis primary but not confirmed by enough replicas in time: 503.
    not_replicated,
    /// A client's publish to a room its token does not allow.
    forbidden,
}

/// How a recovery attempt ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Recovered {
    /// Everything missed was replayed: `socket.recovered` is true.
    recovered,
    /// Part of it was gone (or the session was): the client was told to resync.
    broken,
    /// Not attempted now (no recovery permit in time, history unreadable in time): the
    /// transport was cut and the client comes back with its session untouched.
    deferred,
}

/// Why a socket did not get a message.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// Its send buffer was full: it stopped reading (it is then disconnected).
    send_buffer_full,
}

/// How a client event handed to the backend ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum BackendResult {
    /// A 2xx with the documented answer.
    answered,
    /// A 4xx: the backend said no.
    refused,
    /// A 5xx, unreachable, or an answer that is not the documented JSON.
    failed,
    /// No answer within the timeout.
    timeout,
    /// Not sent: the node had its most requests in flight already.
    busy,
}

/// What became of a presence event.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PresenceResult {
    sent,
    /// Over the room's rate on this node.
    dropped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PresenceLabels {
    result: PresenceResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    result: BackendResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: DropReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    result: Recovered,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    source: Source,
    result: Outcome,
}

/// A gauge kept in milliseconds, exposed in seconds (the unit Prometheus expects).
#[derive(Debug)]
struct LagSeconds(Gauge);

impl prometheus_client::encoding::EncodeMetric for LagSeconds {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0.get() as f64 / 1_000.0))
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// Every metric of a node, registered once.
pub struct Metrics {
    registry: Registry,
    connections: Family<TransportLabels, Gauge>,
    pub messages_delivered: Counter,
    publish_requests: Family<PublishLabels, Counter>,
    pub publish_latency: Histogram,
    pub redis_up: Gauge,
    pub draining: Gauge,
    pub handshakes_refused: Counter,
    pub rebalanced: Counter,
    pub disconnected_by_api: Counter,
    pub user_limit_refusals: Counter,
    backend_events: Family<BackendLabels, Counter>,
    pub backend_latency: Histogram,
    presence_events: Family<PresenceLabels, Counter>,
    pub rebalancing: Gauge,
    recoveries: Family<RecoveryLabels, Counter>,
    pub messages_replayed: Counter,
    pub history_length: Histogram,
    slow_consumer_drops: Family<DropLabels, Counter>,
    pub fanout_gaps: Counter,
    pub redis_failovers: Counter,
    redis_primary: Family<AddressLabels, Gauge>,
    /// Unix seconds of the last move to a new primary.
    redis_last_failover: Gauge,
    /// Milliseconds (shown in seconds): how far the fan-out log reader is behind.
    pub fanout_lag_ms: Gauge,
    /// Room channels subscribed (delivery by interest).
    pub room_channels: Gauge,
    /// The connections this node admits at once (set once, from the config).
    pub connection_limit: Gauge,
}

/// Strips the `_total` the encoder appends to counters again.
fn counter_name(exposed: &'static str) -> &'static str {
    exposed.strip_suffix("_total").unwrap_or(exposed)
}

impl Metrics {
    pub fn new(with_redis: bool) -> Self {
        let mut registry = Registry::default();
        let connections = Family::<TransportLabels, Gauge>::default();
        registry.register(
            names::CONNECTIONS,
            "Live socket.io connections on this node by transport",
            connections.clone(),
        );
        let messages_delivered = Counter::default();
        registry.register(
            counter_name(names::MESSAGES_DELIVERED),
            "Messages written to client sockets",
            messages_delivered.clone(),
        );
        let publish_requests = Family::<PublishLabels, Counter>::default();
        registry.register(
            counter_name(names::PUBLISH_REQUESTS),
            "Publish requests by source and result",
            publish_requests.clone(),
        );
        let publish_latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        registry.register(
            names::PUBLISH_LATENCY,
            "Publish accepted to written to this node's sockets, seconds",
            publish_latency.clone(),
        );
        let redis_up = Gauge::default();
        if with_redis {
            registry.register(
                names::REDIS_UP,
                "Redis link state (1 up, 0 down)",
                redis_up.clone(),
            );
        }
        let draining = Gauge::default();
        registry.register(
            names::DRAINING,
            "1 while this node drains",
            draining.clone(),
        );
        let handshakes_refused = Counter::default();
        registry.register(
            counter_name(names::HANDSHAKES_REFUSED),
            "New socket.io sessions refused with 503 over the node's handshake rate",
            handshakes_refused.clone(),
        );
        let rebalanced = Counter::default();
        registry.register(
            counter_name(names::REBALANCED),
            "Connections this node moved to the others by a rebalance",
            rebalanced.clone(),
        );
        let disconnected_by_api = Counter::default();
        registry.register(
            counter_name(names::DISCONNECTED_BY_API),
            "Sockets this node ended because the disconnect API asked it to",
            disconnected_by_api.clone(),
        );
        let user_limit_refusals = Counter::default();
        registry.register(
            counter_name(names::USER_LIMIT_REFUSALS),
            "Connections refused because their user had as many sockets as the per-user limit allows",
            user_limit_refusals.clone(),
        );
        let backend_events = Family::<BackendLabels, Counter>::default();
        registry.register(
            counter_name(names::BACKEND_EVENTS),
            "Client events handed to the backend, by how they ended",
            backend_events.clone(),
        );
        let backend_latency = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            names::BACKEND_LATENCY,
            "Round trip of a client event to the backend (sent to answer read), seconds",
            backend_latency.clone(),
        );
        let presence_events = Family::<PresenceLabels, Counter>::default();
        registry.register(
            counter_name(names::PRESENCE_EVENTS),
            "Presence events (join/leave) sent to a room's members, or dropped over the room's rate",
            presence_events.clone(),
        );
        let rebalancing = Gauge::default();
        registry.register(
            names::REBALANCING,
            "1 while this node moves clients off for a rebalance (not ready meanwhile)",
            rebalancing.clone(),
        );
        let recoveries = Family::<RecoveryLabels, Counter>::default();
        registry.register(
            counter_name(names::RECOVERIES),
            "Reconnecting clients that asked to recover their session, by result",
            recoveries.clone(),
        );
        let messages_replayed = Counter::default();
        registry.register(
            counter_name(names::MESSAGES_REPLAYED),
            "Messages written to recovering clients from history",
            messages_replayed.clone(),
        );
        let history_length = Histogram::new([1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0]);
        registry.register(
            names::HISTORY_LENGTH,
            "Length of the history stream a message was appended to, after trimming",
            history_length.clone(),
        );
        let slow_consumer_drops = Family::<DropLabels, Counter>::default();
        registry.register(
            counter_name(names::SLOW_CONSUMER_DROPS),
            "Messages a socket did not get because its send buffer was full, by reason",
            slow_consumer_drops.clone(),
        );
        let connection_limit = Gauge::default();
        registry.register(
            names::CONNECTION_LIMIT,
            "Connections this node admits at once (not ready at 90 % of it)",
            connection_limit.clone(),
        );
        let fanout_gaps = Counter::default();
        let redis_failovers = Counter::default();
        let fanout_lag_ms = Gauge::default();
        let room_channels = Gauge::default();
        let redis_primary = Family::<AddressLabels, Gauge>::default();
        let redis_last_failover = Gauge::default();
        if with_redis {
            registry.register(
                names::REDIS_PRIMARY,
                "The Redis primary this node uses now (label address), 1",
                redis_primary.clone(),
            );
            registry.register(
                names::REDIS_LAST_FAILOVER,
                "When this node last moved to a new Redis primary, Unix seconds",
                redis_last_failover.clone(),
            );
            registry.register(
                counter_name(names::REDIS_FAILOVERS),
                "Times this node found a new Redis primary and moved its connections there",
                redis_failovers.clone(),
            );
            registry.register(
                counter_name(names::FANOUT_GAPS),
                "Times the fan-out log reader found entries trimmed before it read them (its sockets were cut to recover)",
                fanout_gaps.clone(),
            );
            registry.register(
                names::FANOUT_LAG,
                "How far the fan-out log reader is behind the newest entry it has seen, seconds",
                LagSeconds(fanout_lag_ms.clone()),
            );
            registry.register(
                names::ROOM_CHANNELS,
                "Room channels this node is subscribed to (delivery by interest; 0 with the whole log)",
                room_channels.clone(),
            );
        }
        let _ = slow_consumer_drops.get_or_create(&DropLabels {
            reason: DropReason::send_buffer_full,
        });
        for result in [Recovered::recovered, Recovered::broken, Recovered::deferred] {
            let _ = recoveries.get_or_create(&RecoveryLabels { result });
        }
        // Both series exist from the start so dashboards and the autoscaler see zeros.
        for transport in [Transport::websocket, Transport::polling] {
            connections
                .get_or_create(&TransportLabels { transport })
                .set(0);
        }
        Self {
            registry,
            connections,
            messages_delivered,
            publish_requests,
            publish_latency,
            redis_up,
            draining,
            handshakes_refused,
            rebalanced,
            disconnected_by_api,
            user_limit_refusals,
            backend_events,
            backend_latency,
            presence_events,
            rebalancing,
            recoveries,
            messages_replayed,
            history_length,
            slow_consumer_drops,
            fanout_gaps,
            redis_failovers,
            redis_primary,
            redis_last_failover,
            fanout_lag_ms,
            room_channels,
            connection_limit,
        }
    }

    /// The primary the node uses now (`host:port`): the only series of the family.
    pub fn redis_primary(&self, address: &str) {
        self.redis_primary.clear();
        self.redis_primary
            .get_or_create(&AddressLabels {
                address: address.to_owned(),
            })
            .set(1);
    }

    /// A move to a new primary, now.
    pub fn redis_failover(&self, address: &str) {
        self.redis_failovers.inc();
        self.redis_primary(address);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.redis_last_failover.set(now);
    }

    pub fn slow_consumer_drop(&self, reason: DropReason, messages: u64) {
        self.slow_consumer_drops
            .get_or_create(&DropLabels { reason })
            .inc_by(messages);
    }

    pub fn backend_event(&self, result: BackendResult) {
        self.backend_events
            .get_or_create(&BackendLabels { result })
            .inc();
    }

    pub fn presence_event(&self, result: PresenceResult) {
        self.presence_events
            .get_or_create(&PresenceLabels { result })
            .inc();
    }

    pub fn recovery(&self, result: Recovered) {
        self.recoveries
            .get_or_create(&RecoveryLabels { result })
            .inc();
    }

    pub fn publish(&self, source: Source, result: Outcome) {
        self.publish_requests
            .get_or_create(&PublishLabels { source, result })
            .inc();
    }

    pub fn set_connections(&self, websocket: usize, polling: usize) {
        let set = |transport, n: usize| {
            self.connections
                .get_or_create(&TransportLabels { transport })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set(Transport::websocket, websocket);
        set(Transport::polling, polling);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_is_exposed_with_or_without_redis() {
        for with_redis in [true, false] {
            let metrics = Metrics::new(with_redis);
            metrics.connection_limit.set(900);
            let text = metrics.encode();
            assert!(
                text.contains(&format!("\n{} 900\n", names::CONNECTION_LIMIT)),
                "{text}"
            );
        }
    }

    #[test]
    fn exposition_uses_the_contract_names() {
        let metrics = Metrics::new(true);
        metrics.publish(Source::http, Outcome::accepted);
        metrics.messages_delivered.inc();
        metrics.set_connections(2, 1);
        metrics.fanout_lag_ms.set(1_500);
        let text = metrics.encode();
        assert!(
            text.contains(&format!("\n{} 1.5\n", names::FANOUT_LAG)),
            "{text}"
        );
        for name in [
            names::MESSAGES_DELIVERED,
            names::PUBLISH_REQUESTS,
            names::REDIS_UP,
            names::DRAINING,
            names::HANDSHAKES_REFUSED,
            names::RECOVERIES,
            names::MESSAGES_REPLAYED,
            names::SLOW_CONSUMER_DROPS,
            names::FANOUT_GAPS,
            names::FANOUT_LAG,
            names::REDIS_FAILOVERS,
        ] {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing in\n{text}"
            );
        }
        assert!(text.contains(&format!("{}_bucket", names::PUBLISH_LATENCY)));
        assert!(text.contains(&format!("{}_bucket", names::HISTORY_LENGTH)));
        assert!(text.contains(&format!(
            "{}{{{}=\"websocket\"}} 2",
            names::CONNECTIONS,
            names::TRANSPORT
        )));
        assert!(text.contains("source=\"http\",result=\"accepted\""));
    }

    #[test]
    fn redis_gauge_absent_in_single_node_mode() {
        assert!(!Metrics::new(false).encode().contains(names::REDIS_UP));
    }
}
