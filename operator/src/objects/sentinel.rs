//! The Sentinels of a replicated managed Redis (`spec.redis.managed.replicas` > 1):
//! three Redis Sentinels (quorum 2) that watch the primary and promote a replica when it
//! fails — Redis's own failover (docs/design/redis-failover.md) — with their Service (the
//! push pods and the Redis pods ask it for the primary), a disruption budget and a
//! NetworkPolicy. Their start script and the Redis pods' are here too: both decide from
//! what the Sentinels say, so one module owns that conversation.

use super::labels::{self, Component};
use super::redis_pod::{
    PASSWORD_DIGEST_ANNOTATION, PodSet, REDIS_PORT, REDIS_USER, password_env, peers,
    redis_security, shell_probe,
};
use super::security::restricted_container_security;
use crate::resources::ManagedRedis;
use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service, TCPSocketAction, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use push_contract::defaults::REDIS_SENTINEL_MASTER;
use std::collections::BTreeMap;

pub const SENTINEL_PORT: u16 = 26379;
const PORT_NAME: &str = "sentinel";
/// Sentinels, and how many must agree that the primary is down (as local mode runs them).
pub const SENTINELS: i32 = 3;
pub const QUORUM: i32 = 2;
/// The primary is down after 5 s without an answer (Redis's documented example; a pod
/// network and a loaded node are slower than local mode's loopback, where it is 2 s).
pub const DOWN_AFTER_MS: u32 = 5000;
pub const FAILOVER_TIMEOUT_MS: u32 = 10000;
/// Sentinels call a dead primary down this far apart ([`down_after_ms`]).
pub const DOWN_AFTER_STAGGER_MS: u32 = 750;

/// Sentinel `index`'s `down-after-milliseconds`: `quorum_ms` for the Sentinel whose verdict
/// completes the quorum (the QUORUM-th to call the primary down), `DOWN_AFTER_STAGGER_MS`
/// earlier or later for the others.
///
/// With one value for all, every Sentinel loses a killed primary at the same instant, they
/// reach `+odown` within one round trip, each votes for itself and none has a majority: a
/// split vote, retried only after twice the failover timeout (measured on loopback: 13.7 s
/// without a 202 instead of 3.5 s). Staggered, one Sentinel reaches `+odown` first and the
/// others vote for it before they can be candidates; the quorum's detection time is
/// unchanged.
pub fn down_after_ms(quorum_ms: u32, index: u32) -> u32 {
    let before_quorum = (QUORUM.unsigned_abs() - 1) * DOWN_AFTER_STAGGER_MS;
    (quorum_ms + index * DOWN_AFTER_STAGGER_MS).saturating_sub(before_quorum)
}
const WORK_DIR: &str = "/data";
/// A Sentinel's marker (in `WORK_DIR`) that it has reset the others once they greeted it.
const GREETED: &str = "greeted";
/// How long a restarted primary waits for the Sentinels to promote a replica.
const PROMOTION_WAIT_SECONDS: u32 = 60;
/// A stopping primary waits this many half seconds for its switchover (then stops anyway:
/// the Sentinels fail it over as a dead one).
const SWITCHOVER_POLLS: u32 = 40;
/// How long a stopping primary holds writes for its switchover (longer than the polls take
/// while the Sentinels answer).
const PAUSE_MS: u32 = 25000;

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.to_string(),
            }),
            ..Default::default()
        }),
    }
}

/// The pod's own name and address, the Redis password and the Sentinels' Service: what
/// the scripts and the preStop hook read (a hook's command is not rewritten per node, its
/// environment is the container's).
pub fn script_env(vc: &ValidatedCluster) -> Vec<EnvVar> {
    vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        password_env(vc),
        EnvVar {
            name: "SENTINEL_HOST".to_string(),
            value: Some(service_host(vc)),
            value_from: None,
        },
    ]
}

/// `host` of the Sentinels' Service, which every script and push pod asks.
pub fn service_host(vc: &ValidatedCluster) -> String {
    format!("{}.{}.svc", vc.names.redis_sentinel, vc.namespace)
}

/// The `host:port` push-server asks for the primary.
pub fn service_address(vc: &ValidatedCluster) -> String {
    format!("{}:{SENTINEL_PORT}", service_host(vc))
}

/// DNS name of Redis pod `ordinal` (the headless `redis_pods` Service).
pub fn redis_pod_host(vc: &ValidatedCluster, ordinal: i32) -> String {
    format!(
        "{}-{ordinal}.{}.{}.svc.cluster.local",
        vc.names.redis, vc.names.redis_pods, vc.namespace
    )
}

/// Shell functions both scripts use. `ask`: the primary's address the Sentinels' Service
/// gives (empty: none answered); `resolve`: a host's address (an address as it is: the
/// test node rewrites names to addresses); `answers`: whether a Redis answers PING with
/// the password. Every call is bounded (`timeout`: an address whose pod is gone does not
/// refuse, it drops). Backticks, not `$(…)`: the kubelet expands `$(NAME)` in args.
fn functions() -> String {
    format!(
        r#"ask() {{ timeout 3 redis-cli -h "$SENTINEL_HOST" -p {SENTINEL_PORT} --raw SENTINEL get-master-addr-by-name {REDIS_SENTINEL_MASTER} 2>/dev/null | head -n 1; }}
resolve() {{ case "$1" in *[!0-9.]*) getent hosts "$1" | cut -d ' ' -f 1 ;; *) echo "$1" ;; esac; }}
answers() {{ timeout 3 redis-cli -h "$1" -p {REDIS_PORT} -a "$REDIS_PASSWORD" --no-auth-warning -e PING >/dev/null 2>&1; }}"#
    )
}

/// The Redis pods' start script: whose replica to be is the Sentinels' answer, and only
/// when no Sentinel knows a primary yet (the first start) does pod 0 start as the primary.
/// - Named primary itself: the pod restarted before the Sentinels noticed; starting empty
///   as the primary would make every replica drop its copy of the data, so it has them
///   promote a replica first and joins it.
/// - Named primary not answering (its pod is gone, the failover not done yet): it waits
///   for the new one instead of replicating an address nobody will ever answer on (the
///   Sentinels only learn a replica from the primary it syncs from).
pub fn redis_script(vc: &ValidatedCluster, server_args: &[String]) -> String {
    let args = server_args.join(" ");
    let pod0 = format!("{}-0", vc.names.redis);
    let pod0_host = redis_pod_host(vc, 0);
    format!(
        r#"set -u
{functions}
primary=`ask` || primary=
if [ "$primary" = "$POD_IP" ]; then
  echo "the Sentinels name this restarted pod as the primary: asking them to promote a replica"
  timeout 3 redis-cli -h "$SENTINEL_HOST" -p {SENTINEL_PORT} SENTINEL FAILOVER {REDIS_SENTINEL_MASTER} || true
fi
waited=0
while [ -n "$primary" ] && [ "$waited" -lt {PROMOTION_WAIT_SECONDS} ]; do
  if [ "$primary" = "$POD_IP" ]; then :; elif answers "$primary"; then break; fi
  sleep 1; waited=`expr "$waited" + 1`; primary=`ask` || primary=
done
if [ -z "$primary" ]; then
  if [ "$POD_NAME" = "{pod0}" ]; then
    echo "no Sentinel knows a primary: starting as the first primary"
    exec redis-server {args}
  fi
  primary=`resolve {pod0_host}` || primary=
  [ -n "$primary" ] || {{ echo "{pod0_host} has no address yet"; exit 1; }}
fi
if [ "$primary" = "$POD_IP" ]; then
  echo "still named the primary and nothing was promoted: starting as the primary"
  exec redis-server {args}
fi
# The Sentinels re-point the replicas they know; one they do not know yet (it came back
# at a new address just before a failover, and they learn replicas from the primary's
# INFO every 10 s) would replicate the old primary forever. So every replica follows the
# primary they name, as the push pods do (never promoting anything: that is theirs).
(
  while sleep 1; do
    named=`ask` || continue
    [ -n "$named" ] && [ "$named" != "$POD_IP" ] || continue
    info=`timeout 3 redis-cli -h "$POD_IP" -p {REDIS_PORT} -a "$REDIS_PASSWORD" --no-auth-warning INFO replication | tr -d '\r'` || continue
    case "$info" in *role:slave*) ;; *) continue ;; esac
    current=`echo "$info" | awk -F: '$1 == "master_host" {{ print $2 }}'`
    if [ "$current" != "$named" ] && answers "$named"; then
      echo "replicating $current but the Sentinels name $named: following it"
      timeout 3 redis-cli -h "$POD_IP" -p {REDIS_PORT} -a "$REDIS_PASSWORD" --no-auth-warning REPLICAOF "$named" {REDIS_PORT} >/dev/null
    fi
  done
) &
echo "starting as a replica of $primary"
exec redis-server {args} --replicaof "$primary" {REDIS_PORT}
"#,
        functions = functions(),
    )
}

/// The Redis pods' readiness: the primary; or a replica whose link to the primary is up
/// (it holds the data) and that every Sentinel lists as a healthy replica (they learn one
/// from the primary's `INFO` every 10 s; the one leading a failover re-points only the
/// replicas it knows, and a replica it does not know is left on the old primary). A
/// rollout waits for that before it stops the next pod, the primary last.
pub fn redis_in_sync() -> String {
    format!(
        r#"info=`timeout 3 redis-cli -h "$POD_IP" -p {REDIS_PORT} -a "$REDIS_PASSWORD" --no-auth-warning INFO replication` || exit 1
case "$info" in *role:master*) exit 0 ;; *master_link_status:up*) ;; *) exit 1 ;; esac
lists_me() {{ timeout 2 redis-cli -h "$1" -p {SENTINEL_PORT} --raw SENTINEL REPLICAS {REDIS_SENTINEL_MASTER} | awk -v me="$POD_IP" 'previous == "ip" {{ ip = $0 }} previous == "flags" && ip == me && $0 == "slave" {{ known = 1 }} {{ previous = $0 }} END {{ exit !known }}'; }}
lists_me "$SENTINEL_HOST" || exit 1
others=`timeout 2 redis-cli -h "$SENTINEL_HOST" -p {SENTINEL_PORT} --raw SENTINEL SENTINELS {REDIS_SENTINEL_MASTER} | awk 'previous == "ip" {{ ip = $0 }} previous == "flags" && $0 == "sentinel" {{ print ip }} {{ previous = $0 }}'` || exit 1
for other in $others; do lists_me "$other" || exit 1; done
"#
    )
}

/// The Redis pods' preStop hook: a primary about to stop (a rollout, a drain, a deleted
/// pod) has the Sentinels promote a replica first and becomes its replica, so publishes
/// pause for a switchover (about a second) instead of the Sentinels' detection of a dead
/// primary (`DOWN_AFTER_MS`, then the failover).
///
/// Writes are paused on it first (`CLIENT PAUSE … WRITE`): between the promotion and its
/// own demotion the old primary still takes writes, and a replica not yet re-pointed still
/// acknowledges them (`WAIT`), so a publish answered 202 there would be dropped when that
/// replica resyncs from the new primary (measured: one of 938 lost before the pause).
///
/// It demotes itself (`REPLICAOF` is not a write: the pause lets it through) as soon as
/// the Sentinels name the new primary. Left to them, the demotion never came while it
/// was paused: their hello `PUBLISH` waits out the pause, the `PING`s queue behind it, and
/// they only reconfigure an instance that has answered for 8 s (measured: still the
/// primary 21 s after the promotion, then unpaused as one). A paused write is answered
/// once the pause ends, on a replica: refused, retried with its key.
pub fn redis_pre_stop() -> String {
    let cli = format!(
        "timeout 3 redis-cli -h \"$POD_IP\" -p {REDIS_PORT} -a \"$REDIS_PASSWORD\" --no-auth-warning"
    );
    format!(
        r#"say() {{ echo "`date +%H:%M:%S` $*"; }}
{functions}
role=`{cli} --raw ROLE 2>/dev/null | head -n 1` || exit 0
[ "$role" = master ] || exit 0
{cli} CLIENT PAUSE {PAUSE_MS} WRITE >/dev/null 2>&1 || exit 0
say "primary stopping: writes paused, asking the Sentinels for a switchover"
tries=0
answer=
while [ "$answer" != OK ] && [ "$tries" -lt {SWITCHOVER_POLLS} ]; do
  answer=`timeout 3 redis-cli -h "$SENTINEL_HOST" -p {SENTINEL_PORT} SENTINEL FAILOVER {REDIS_SENTINEL_MASTER} 2>&1` || answer=
  [ "$answer" = OK ] || {{ say "SENTINEL FAILOVER: ${{answer:-no answer}}"; sleep 0.5; tries=`expr "$tries" + 1`; }}
done
primary="$POD_IP"
if [ "$answer" = OK ]; then
  say "switchover started"
  tries=0
  while [ "$tries" -lt {SWITCHOVER_POLLS} ]; do
    primary=`ask` || primary=
    [ -z "$primary" ] || [ "$primary" = "$POD_IP" ] || break
    sleep 0.5; tries=`expr "$tries" + 1`
  done
fi
if [ -n "$primary" ] && [ "$primary" != "$POD_IP" ]; then
  {cli} REPLICAOF "$primary" {REDIS_PORT} >/dev/null 2>&1
  say "the Sentinels name $primary: a replica of it now"
else
  say "no switchover: stopping as the primary (the Sentinels fail it over as a dead one)"
fi
{cli} CLIENT UNPAUSE >/dev/null 2>&1
"#,
        functions = functions(),
    )
}

/// The Sentinels' readiness: this Sentinel has reset the others (its start script),
/// reaches a quorum and a majority of Sentinels (`SENTINEL CKQUORUM`) and knows at least
/// one healthy replica to promote. A Sentinel learns replicas from the primary's `INFO`
/// every 10 s: until then a failover would abort with "no good slave", so it is not ready
/// (measured: a primary deleted 10 s after the first start was not failed over).
pub fn sentinel_ready() -> String {
    format!(
        r#"[ -f {WORK_DIR}/{GREETED} ] || exit 1
cli() {{ timeout 3 redis-cli -h "$POD_IP" -p {SENTINEL_PORT} "$@"; }}
cli SENTINEL CKQUORUM {REDIS_SENTINEL_MASTER} | grep -q '^OK' || exit 1
cli --raw SENTINEL REPLICAS {REDIS_SENTINEL_MASTER} | awk 'previous == "flags" && $0 == "slave" {{ healthy++ }} {{ previous = $0 }} END {{ exit !(healthy >= 1) }}'
"#
    )
}

/// The Sentinels' start script: the primary is what the other Sentinels say, else the
/// Redis pod that says it is one, else pod 0 (the first start); then the configuration
/// file (a Sentinel rewrites its own, so it lives on the pod's writable volume).
pub fn sentinel_script(vc: &ValidatedCluster, redis_replicas: i32) -> String {
    let hosts: Vec<String> = (0..redis_replicas).map(|i| redis_pod_host(vc, i)).collect();
    format!(
        r#"set -u
{functions}
primary=`ask` || primary=
if [ -z "$primary" ]; then
  for host in {hosts}; do
    role=`timeout 3 redis-cli -h "$host" -p {REDIS_PORT} -a "$REDIS_PASSWORD" --no-auth-warning --raw ROLE 2>/dev/null | head -n 1` || role=
    if [ "$role" = master ]; then primary=`resolve "$host"` || primary=; break; fi
  done
fi
[ -n "$primary" ] || primary=`resolve {pod0_host}` || primary=
[ -n "$primary" ] || {{ echo "no Redis pod has an address yet"; exit 1; }}
echo "watching the primary at $primary"
ordinal=${{POD_NAME##*-}}
down_after=`expr {first_down_after} + "$ordinal" \* {DOWN_AFTER_STAGGER_MS}`
cat > {work}/sentinel.conf <<EOF
port {SENTINEL_PORT}
bind $POD_IP
sentinel announce-ip $POD_IP
sentinel monitor {master} $primary {REDIS_PORT} {QUORUM}
sentinel auth-pass {master} $REDIS_PASSWORD
sentinel down-after-milliseconds {master} $down_after
sentinel failover-timeout {master} {FAILOVER_TIMEOUT_MS}
sentinel parallel-syncs {master} 1
EOF
# This Sentinel's previous life (another address, another ID) stays in the others' lists
# as a Sentinel that is down, and counts against the majority a failover needs: once they
# greet this one, each other Sentinel is reset (it forgets and, within seconds,
# rediscovers the Sentinels and replicas that are really there). Not ready before that
# (the marker `greeted`): a reset aborts a failover the other runs, so the servers' roll,
# which waits for the Sentinels', must not start a switchover while resets are due.
rm -f {work}/{GREETED}
(
  waited=0
  while [ "$waited" -lt 60 ]; do
    sleep 2; waited=`expr "$waited" + 2`
    others=`timeout 3 redis-cli -h "$POD_IP" -p {SENTINEL_PORT} --raw SENTINEL SENTINELS {master} 2>/dev/null | awk 'previous == "ip" {{ print }} {{ previous = $0 }}'` || others=
    if [ -n "$others" ]; then
      for other in $others; do timeout 3 redis-cli -h "$other" -p {SENTINEL_PORT} SENTINEL RESET {master} >/dev/null 2>&1; done
      break
    fi
  done
  touch {work}/{GREETED}
) &
exec redis-server {work}/sentinel.conf --sentinel
"#,
        functions = functions(),
        hosts = hosts.join(" "),
        pod0_host = redis_pod_host(vc, 0),
        first_down_after = down_after_ms(DOWN_AFTER_MS, 0),
        master = REDIS_SENTINEL_MASTER,
        work = WORK_DIR,
    )
}

/// A Sentinel needs little: it answers a few questions a second.
fn resources() -> ResourceRequirements {
    super::requests::with_memory_limit("20m", "32Mi", "64Mi")
}

pub fn statefulset(
    vc: &ValidatedCluster,
    managed: &ManagedRedis,
    password_digest: &str,
) -> StatefulSet {
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.to_string()),
            host: None,
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    let container = Container {
        name: "sentinel".to_string(),
        image: Some(managed.image.clone()),
        command: Some(vec!["sh".to_string(), "-c".to_string()]),
        args: Some(vec![sentinel_script(vc, managed.replicas)]),
        env: Some(script_env(vc)),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: i32::from(SENTINEL_PORT),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        readiness_probe: Some(shell_probe(sentinel_ready(), 2, 7)),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..probe
        }),
        resources: Some(resources()),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: "work".to_string(),
            mount_path: WORK_DIR.to_string(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    StatefulSet {
        metadata: labels::object_meta(vc, &vc.names.redis_sentinel, Component::RedisSentinel),
        spec: StatefulSetSpec {
            replicas: Some(SENTINELS),
            service_name: Some(vc.names.redis_sentinel.clone()),
            // Sentinels find each other through the primary: none waits for another.
            pod_management_policy: Some("Parallel".to_string()),
            selector: sentinels(vc).selector(vc),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::labels(vc, Component::RedisSentinel)),
                    annotations: Some(BTreeMap::from([(
                        PASSWORD_DIGEST_ANNOTATION.to_string(),
                        password_digest.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "work".to_string(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    priority_class_name: managed.priority_class_name.clone(),
                    topology_spread_constraints: Some(sentinels(vc).spread(vc)),
                    automount_service_account_token: Some(false),
                    security_context: Some(redis_security(REDIS_USER)),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}

/// The Sentinels as a pod set.
pub fn sentinels(vc: &ValidatedCluster) -> PodSet<'_> {
    PodSet {
        name: &vc.names.redis_sentinel,
        component: Component::RedisSentinel,
        port: SENTINEL_PORT,
        port_name: PORT_NAME,
    }
}

pub fn service(vc: &ValidatedCluster) -> Service {
    sentinels(vc).service(vc, &vc.names.redis_sentinel, false)
}

/// Drains take one Sentinel at a time: two of three must stay to agree on a failover.
pub fn pod_disruption_budget(vc: &ValidatedCluster) -> PodDisruptionBudget {
    sentinels(vc).disruption_budget(vc)
}

/// The push pods, the Redis pods and the other Sentinels may ask a Sentinel; nobody else.
pub fn network_policy(vc: &ValidatedCluster) -> NetworkPolicy {
    sentinels(vc).network_policy(vc, peers(vc))
}
