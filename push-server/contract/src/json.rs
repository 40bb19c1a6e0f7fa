//! Every contract constant as JSON, for the Python/Node e2e suites: they read the
//! committed `e2e/contract.json` instead of copying strings.
//!
//! Regenerate after changing a constant:
//! `UPDATE_CONTRACT_JSON=1 cargo test -p push-contract` (a test fails while the
//! committed file differs, and another while a constant is missing here).

use serde_json::{Map, Value, json};

/// `"module::path" => [CONST, ...]` into `{"module::path": {"CONST": value}}`.
macro_rules! render {
    ($($key:literal => $($module:ident)::+ [$($name:ident),* $(,)?]),* $(,)?) => {{
        let mut root = Map::new();
        $(
            {
                use crate::$($module)::+ as current;
                let mut section = Map::new();
                $( section.insert(stringify!($name).to_owned(), json!(current::$name)); )*
                root.insert($key.to_owned(), Value::Object(section));
            }
        )*
        Value::Object(root)
    }};
}

/// The contract, keyed by module path (`"env"`, `"operator::env"`, ...).
pub fn contract_json() -> Value {
    render! {
        "env" => env [
            LISTEN, ADMIN_LISTEN, ADDRESS_FILE, NODE_ID, REDIS_URL, REDIS_PASSWORD, REDIS_CA_FILE, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_CLUSTER, REDIS_MIN_REPLICAS, REDIS_CHANNEL, FANOUT, REDIS_TIMEOUT_MS, API_TOKEN,
            JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_ISSUER, JWT_AUDIENCE, MAX_PAYLOAD_BYTES, EVENTS_PER_SECOND, EVENT_BURST, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_USER, HANDSHAKES_PER_SECOND, HEADER_TIMEOUT_SECONDS,
            PING_INTERVAL_MS, PING_TIMEOUT_MS, WRITE_WINDOW_MS,
            DRAIN_SECONDS, DRAIN_SETTLE_MS, SEND_BUFFER_MESSAGES, HISTORY_MAX_MESSAGES, HISTORY_TTL_SECONDS, SESSION_SECRET, SESSION_COOKIE, SESSION_PREFIX, SESSION_USER_PATH,
            BACKEND_URL, BACKEND_SECRET, BACKEND_EVENTS, BACKEND_IDEMPOTENT_EVENTS, BACKEND_TIMEOUT_MS, BACKEND_MAX_IN_FLIGHT,
            PRESENCE_EVENTS, PRESENCE_EVENTS_PER_SECOND, ADMIN_UI_PASSWORD, ADMIN_UI_USERNAME, ADMIN_UI_READONLY, ADMIN_UI_DIR,
            CLIENT_JS, DEMO_PAGE, LOG, LOG_FORMAT, SET_BY_OPERATOR,
        ],
        "defaults" => defaults [
            PORT, ADMIN_PORT, LISTEN, ADMIN_LISTEN, DRAIN_SECONDS, DRAIN_SETTLE_MS, MAX_PAYLOAD_BYTES,
            REDIS_CHANNEL, REDIS_SENTINEL_MASTER, REDIS_TIMEOUT_MS, EVENTS_PER_SECOND, EVENT_BURST, HANDSHAKES_PER_SECOND, HEADER_TIMEOUT_SECONDS, PING_INTERVAL_MS, PING_TIMEOUT_MS, FD_RESERVE, MEMORY_RESERVE_BYTES, MEMORY_PER_CONNECTION_BYTES, SESSION_COOKIE, SESSION_PREFIX, SESSION_USER_PATH, NAMESPACE,
            HISTORY_MAX_MESSAGES, HISTORY_TTL_SECONDS, SEND_BUFFER_MESSAGES, BACKEND_TIMEOUT_MS, BACKEND_MAX_IN_FLIGHT, PRESENCE_EVENTS_PER_SECOND,
        ],
        "paths" => paths [SOCKET_IO, PUBLISH, ADMIN_UI, REBALANCE, DISCONNECT, ROOM_PRESENCE, USER_PRESENCE, METRICS, HEALTHZ, READYZ],
        "metrics" => metrics [
            CONNECTIONS, CONNECTION_LIMIT, TRANSPORT, MESSAGES_DELIVERED, PUBLISH_REQUESTS, PUBLISH_LATENCY,
            REDIS_UP, DRAINING, HANDSHAKES_REFUSED, REBALANCED, DISCONNECTED_BY_API, USER_LIMIT_REFUSALS, BACKEND_EVENTS, BACKEND_LATENCY, PRESENCE_EVENTS, REBALANCING, RECOVERIES, HISTORY_LENGTH, MESSAGES_REPLAYED, SLOW_CONSUMER_DROPS,
            FANOUT_GAPS, FANOUT_LAG, ROOM_CHANNELS, REDIS_FAILOVERS, REDIS_PRIMARY, REDIS_LAST_FAILOVER, ADDRESS,
        ],
        "socket" => socket [SUBSCRIBE, UNSUBSCRIBE, PUBLISH, USER_ROOM_PREFIX, RESERVED_ROOM_PREFIX, AUTH_EXPIRED, DISCONNECT_REASON, REFRESH_TOKEN, ROOMS_REVOKED, CONTINUITY_BROKEN, PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE, ADMIN_NAMESPACE, MAX_ADMINS_PER_NODE],
        "cluster" => cluster [ADAPTER_PREFIX],
        "kube" => kube [
            GROUP, VERSION, KIND, FIELD_MANAGER, LABEL_NAME, LABEL_INSTANCE, LABEL_COMPONENT,
            LABEL_MANAGED_BY, LABEL_PART_OF, APP_NAME, COMPONENT_SERVER, COMPONENT_REDIS, COMPONENT_REDIS_SENTINEL,
            MANAGED_BY, ANNOTATION_CONFIG_HASH, ANNOTATION_POD_DELETION_COST,
        ],
        "operator::env" => operator::env [
            POD_NAME, POD_NAMESPACE, WATCH_NAMESPACES, LEASE_NAME, ADMIN_LISTEN, LOG, LOG_FORMAT,
            PUSH_SERVER_IMAGE, CLUSTER_ROLLOUT_DELAY_SECONDS,
        ],
        "operator" => operator [ADMIN_PORT, ADMIN_LISTEN, LEASE_NAME],
        "local_mode" => local_mode [
            ENDPOINT_PREFIX, API_ENDPOINT_PREFIX, API_TOKEN_PREFIX, PHASE_STARTING, PHASE_READY, PHASE_DRAINING, PHASE_CRASHED,
            STEP_INTERVAL_MS, STEP_MESSAGE, REBALANCE_MESSAGE, STEP_RECOMMENDED, STEP_REPLICAS, STEP_CONNECTIONS, STEP_MEASURED,
            STEP_UNMEASURED, STEP_VICTIMS,
        ],
    }
}

/// The committed file's text: pretty JSON plus a final newline.
pub fn contract_json_text() -> String {
    let mut text = serde_json::to_string_pretty(&contract_json()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// `pub const` names per `pub mod` path, read from the contract's source.
    fn declared_constants(source: &str) -> Vec<(String, String)> {
        let mut stack: Vec<(String, i32)> = Vec::new();
        let mut depth = 0;
        let mut out = Vec::new();
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or_default().trim();
            if let Some(rest) = code.strip_prefix("pub mod ")
                && let Some(name) = rest.strip_suffix('{')
            {
                stack.push((name.trim().to_owned(), depth));
                depth += 1;
                continue;
            }
            if let Some(rest) = code.strip_prefix("pub const ")
                && !stack.is_empty()
            {
                let name = rest.split(':').next().unwrap_or_default().trim().to_owned();
                let path: Vec<&str> = stack.iter().map(|(m, _)| m.as_str()).collect();
                out.push((path.join("::"), name));
            }
            depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
            while stack.last().is_some_and(|(_, d)| depth <= *d) {
                stack.pop();
            }
        }
        out
    }

    #[test]
    fn every_declared_constant_is_rendered() {
        let json = contract_json();
        let declared = declared_constants(include_str!("lib.rs"));
        assert!(
            declared.len() > 50,
            "parser found only {} constants",
            declared.len()
        );
        for (module, name) in declared {
            assert!(
                json.get(&module).and_then(|m| m.get(&name)).is_some(),
                "{module}::{name} is missing from contract_json(): add it in src/json.rs"
            );
        }
    }

    #[test]
    fn committed_contract_json_is_current() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e/contract.json");
        let want = contract_json_text();
        if std::env::var_os("UPDATE_CONTRACT_JSON").is_some() {
            std::fs::write(&path, &want).expect("write e2e/contract.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == want,
            "e2e/contract.json is stale: run `UPDATE_CONTRACT_JSON=1 cargo test -p push-contract` and commit it"
        );
    }
}
