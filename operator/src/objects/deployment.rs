//! The push-server Deployment and the container environment it runs with.
//!
//! [`push_server_env`] is its own function because local mode runs
//! push-server processes with exactly that environment; [`sentinel_env`] is what local
//! mode adds for a managed Redis with replicas (Kubernetes runs one Redis pod today).

use super::labels::{self, Component};
use super::security::{restricted_container_security, runtime_default_seccomp};
use crate::resources::{ExternalRedis, PullPolicy};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use push_contract::{defaults, env, kube as names, paths};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const CONTAINER_NAME: &str = "push-server";
pub const HTTP_PORT_NAME: &str = "http";
pub const ADMIN_PORT_NAME: &str = "admin";
/// Where the JWT public key Secret is mounted.
pub const JWT_KEY_DIR: &str = "/etc/pushcluster/jwt";
/// Default requests of a push-server container, and its memory limit: an idle connection
/// costs about 6.5 KiB (bench/results/2026-11-29.md), so 1 GiB holds tens of thousands of
/// connections with their send buffers. No CPU limit: throttling a node in a fan-out
/// delays every client on it.
const DEFAULT_CPU_REQUEST: &str = "100m";
const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
const DEFAULT_MEMORY_LIMIT: &str = "1Gi";

/// The push-server container's resources: the spec's, else the defaults above (never
/// BestEffort: that is the first pod a node under memory pressure evicts).
fn push_server_resources(vc: &ValidatedCluster) -> ResourceRequirements {
    vc.spec.resources.clone().unwrap_or_else(|| {
        super::requests::with_memory_limit(
            DEFAULT_CPU_REQUEST,
            DEFAULT_MEMORY_REQUEST,
            DEFAULT_MEMORY_LIMIT,
        )
    })
}
pub const JWT_KEY_FILE: &str = "public-key.pem";
pub const REDIS_CA_DIR: &str = "/etc/pushcluster/redis-ca";
pub const REDIS_CA_FILE: &str = "ca.pem";

/// A Secret key push-server reads as a file (a variable names its path): mounted in the
/// pod, written to the work directory in local mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The variable that names the file.
    pub var: &'static str,
    /// The pod volume holding it.
    pub volume: &'static str,
    pub dir: &'static str,
    pub file: &'static str,
    pub key: crate::resources::SecretKeyRef,
}

impl SecretFile {
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir, self.file)
    }
}

/// The Secret keys this cluster's push-servers read as files: the JWT public key and
/// the CA of a TLS Redis.
pub fn secret_files(vc: &ValidatedCluster) -> Vec<SecretFile> {
    let jwt_key = vc
        .spec
        .auth
        .jwt
        .as_ref()
        .and_then(|j| j.public_key_secret_ref.clone())
        .map(|key| SecretFile {
            var: env::JWT_PUBLIC_KEY_FILE,
            volume: "jwt-public-key",
            dir: JWT_KEY_DIR,
            file: JWT_KEY_FILE,
            key,
        });
    let redis_ca = vc
        .spec
        .redis
        .external
        .as_ref()
        .and_then(|e| e.tls.as_ref())
        .and_then(|t| t.ca_secret_ref.clone())
        .map(|key| SecretFile {
            var: env::REDIS_CA_FILE,
            volume: "redis-ca",
            dir: REDIS_CA_DIR,
            file: REDIS_CA_FILE,
            key,
        });
    jwt_key.into_iter().chain(redis_ca).collect()
}
/// The push-server image's non-root user.
pub const RUN_AS_USER: i64 = 65532;
/// Time beyond the drain window: the settle before it (push-server's
/// `defaults::DRAIN_SETTLE_MS`, 1 s) and the exit after the last client left.
pub const TERMINATION_MARGIN_SECONDS: i64 = 15;

/// Env vars the operator sets itself; `spec.env` may not override them.
pub fn operator_env_names() -> &'static [&'static str] {
    env::SET_BY_OPERATOR
}

/// The Redis URL the pods use (password comes separately, from a Secret).
/// socketioxide-redis needs RESP3, so `protocol=resp3` is added when absent.
pub fn redis_url(vc: &ValidatedCluster) -> String {
    let external = vc.spec.redis.external.as_ref();
    // With Sentinels or a cluster, push-server takes only the settings from the URL;
    // they name the host.
    let scheme = if external.is_some_and(|e| e.tls.is_some()) {
        "rediss"
    } else {
        "redis"
    };
    let first_of = |addresses: &[String]| {
        format!(
            "{scheme}://{}/0?protocol=resp3",
            addresses.first().map_or("redis", String::as_str)
        )
    };
    match external {
        Some(ExternalRedis { url: Some(url), .. }) if url.contains("protocol=") => url.clone(),
        Some(ExternalRedis { url: Some(url), .. }) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}protocol=resp3")
        }
        Some(ExternalRedis {
            sentinel: Some(sentinel),
            ..
        }) => first_of(&sentinel.addresses),
        Some(ExternalRedis {
            cluster: Some(cluster),
            ..
        }) => first_of(&cluster.addresses),
        _ => format!(
            "redis://{}.{}.svc:{}/0?protocol=resp3",
            vc.names.redis,
            vc.namespace,
            super::redis_pod::REDIS_PORT
        ),
    }
}

/// The variables that point push-server at Sentinel-managed Redis (a managed Redis with
/// `replicas` > 1): where the Sentinels are (`host:port` each), the name they monitor the
/// primary under, and one replica to acknowledge every publish (`WAIT`) before its 202.
/// [`push_server_env`]'s Redis URL and password stay as they are (push-server takes the
/// scheme, user and db from the URL and asks the Sentinels for the host).
pub fn sentinel_env(sentinels: &[String], master: &str, min_replicas: u32) -> Vec<EnvVar> {
    vec![
        value(env::REDIS_SENTINELS, sentinels.join(",")),
        value(env::REDIS_SENTINEL_MASTER, master),
        value(env::REDIS_MIN_REPLICAS, min_replicas.to_string()),
    ]
}

/// The variables for a Redis whose primary can move: [`sentinel_env`] for an external
/// Sentinel set or the managed Redis with replicas (its Sentinels' Service; one replica
/// acknowledges every publish), the seed nodes for an external Redis Cluster. Empty
/// otherwise.
pub fn redis_topology_env(vc: &ValidatedCluster) -> Vec<EnvVar> {
    let redis = &vc.spec.redis;
    let external = redis.external.as_ref();
    if let Some(s) = external.and_then(|e| e.sentinel.as_ref()) {
        return sentinel_env(&s.addresses, &s.master_name, s.min_replicas_to_acknowledge);
    }
    if let Some(c) = external.and_then(|e| e.cluster.as_ref()) {
        return vec![
            value(env::REDIS_CLUSTER, c.addresses.join(",")),
            value(
                env::REDIS_MIN_REPLICAS,
                c.min_replicas_to_acknowledge.to_string(),
            ),
        ];
    }
    if redis.managed.as_ref().is_some_and(|m| m.replicas > 1) {
        return sentinel_env(
            &[super::sentinel::service_address(vc)],
            push_contract::defaults::REDIS_SENTINEL_MASTER,
            1,
        );
    }
    Vec::new()
}

/// The Secret key holding the publish API token (the user's, or the generated one).
pub fn api_token_secret(vc: &ValidatedCluster) -> crate::resources::SecretKeyRef {
    api_token_secret_of(&vc.spec, &vc.names)
}

/// [`api_token_secret`] from a spec and its cluster's names (the autoscaler, which
/// works from the PushCluster as stored).
pub fn api_token_secret_of(
    spec: &crate::resources::PushClusterSpec,
    names: &crate::validate::DerivedNames,
) -> crate::resources::SecretKeyRef {
    spec.auth
        .api_token_secret_ref
        .clone()
        .unwrap_or_else(|| crate::resources::SecretKeyRef {
            name: names.api_token_secret.clone(),
            key: super::secrets::API_TOKEN_KEY.to_string(),
        })
}

/// The Secret key holding the Redis password, if Redis has one.
pub fn redis_password_secret(vc: &ValidatedCluster) -> Option<crate::resources::SecretKeyRef> {
    match &vc.spec.redis.external {
        Some(external) => external.password_secret_ref.clone(),
        None => Some(crate::resources::SecretKeyRef {
            name: vc.names.redis_password_secret.clone(),
            key: super::secrets::REDIS_PASSWORD_KEY.to_string(),
        }),
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &crate::resources::SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

/// The push-server container environment: operator-set variables (names from
/// `push_contract::env`) followed by the user's `spec.env`. Secrets only by reference.
pub fn push_server_env(vc: &ValidatedCluster) -> Vec<EnvVar> {
    let spec = &vc.spec;
    let mut vars = vec![
        value(env::LISTEN, defaults::LISTEN),
        value(env::ADMIN_LISTEN, defaults::ADMIN_LISTEN),
        value(env::DEMO_PAGE, spec.demo_page.unwrap_or(false).to_string()),
        EnvVar {
            name: env::NODE_ID.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".to_string(),
                }),
                ..Default::default()
            }),
        },
        value(env::REDIS_URL, redis_url(vc)),
    ];
    vars.extend(redis_topology_env(vc));
    if let Some(password) = redis_password_secret(vc) {
        vars.push(from_secret(env::REDIS_PASSWORD, &password));
    }
    vars.push(from_secret(env::API_TOKEN, &api_token_secret(vc)));
    vars.extend(secret_files(vc).iter().map(|f| value(f.var, f.path())));
    if let Some(jwt) = &spec.auth.jwt {
        if let Some(secret) = &jwt.secret_ref {
            vars.push(from_secret(env::JWT_SECRET, secret));
        }
        if let Some(issuer) = &jwt.issuer {
            vars.push(value(env::JWT_ISSUER, issuer.clone()));
        }
        if let Some(audience) = &jwt.audience {
            vars.push(value(env::JWT_AUDIENCE, audience.clone()));
        }
    }
    if let Some(session) = &spec.auth.session {
        vars.push(from_secret(env::SESSION_SECRET, &session.secret_ref));
        vars.push(value(env::SESSION_COOKIE, session.cookie_name.clone()));
        vars.push(value(env::SESSION_PREFIX, session.prefix.clone()));
        vars.push(value(env::SESSION_USER_PATH, session.user_path.clone()));
    }
    if let Some(max) = spec.max_payload_bytes {
        vars.push(value(env::MAX_PAYLOAD_BYTES, max.to_string()));
    }
    vars.push(value(env::DRAIN_SECONDS, spec.drain_seconds.to_string()));
    // 0 messages is push-server's "history off".
    let history = &spec.history;
    let max_messages = if history.enabled {
        history.max_messages
    } else {
        0
    };
    vars.push(value(env::HISTORY_MAX_MESSAGES, max_messages.to_string()));
    vars.push(value(
        env::HISTORY_TTL_SECONDS,
        history.ttl_seconds.to_string(),
    ));
    // 0 connections is push-server's "what the open-file and memory limits allow".
    let admission = &spec.admission;
    vars.push(value(
        env::MAX_CONNECTIONS,
        admission.max_connections_per_pod.to_string(),
    ));
    vars.push(value(
        env::MAX_CONNECTIONS_PER_USER,
        admission.max_connections_per_user.to_string(),
    ));
    vars.push(value(
        env::HANDSHAKES_PER_SECOND,
        admission.handshakes_per_second.to_string(),
    ));
    vars.push(value(
        env::HEADER_TIMEOUT_SECONDS,
        admission.header_timeout_seconds.to_string(),
    ));
    let delivery = &spec.delivery;
    vars.push(value(env::FANOUT, delivery.fanout.as_str().to_string()));
    vars.push(value(
        env::WRITE_WINDOW_MS,
        delivery.write_window_ms.to_string(),
    ));
    if let Some(admin_ui) = &spec.admin_ui {
        vars.push(from_secret(
            env::ADMIN_UI_PASSWORD,
            &admin_ui.password_secret_ref,
        ));
        vars.push(value(env::ADMIN_UI_USERNAME, admin_ui.username.clone()));
        vars.push(value(env::ADMIN_UI_READONLY, admin_ui.readonly.to_string()));
    }
    vars.push(value(
        env::PRESENCE_EVENTS,
        spec.presence.events.to_string(),
    ));
    vars.push(value(
        env::PRESENCE_EVENTS_PER_SECOND,
        spec.presence.events_per_second_per_room.to_string(),
    ));
    if let Some(backend) = &spec.backend {
        let names = |idempotent_only: bool| {
            backend
                .events
                .iter()
                .filter(|e| e.idempotent || !idempotent_only)
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        vars.push(value(env::BACKEND_URL, backend.url.clone()));
        vars.push(from_secret(
            env::BACKEND_SECRET,
            &backend.signing_secret_ref,
        ));
        vars.push(value(env::BACKEND_EVENTS, names(false)));
        vars.push(value(env::BACKEND_IDEMPOTENT_EVENTS, names(true)));
        vars.push(value(
            env::BACKEND_TIMEOUT_MS,
            backend.timeout_ms.to_string(),
        ));
        vars.push(value(
            env::BACKEND_MAX_IN_FLIGHT,
            backend.max_in_flight_per_pod.to_string(),
        ));
    }
    vars.push(value(env::LOG_FORMAT, "json"));
    vars.extend(spec.env.iter().cloned());
    vars
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn container(vc: &ValidatedCluster) -> Container {
    let spec = &vc.spec;
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_string(),
        mount_path: "/tmp".to_string(),
        ..Default::default()
    }];
    mounts.extend(secret_files(vc).into_iter().map(|f| VolumeMount {
        name: f.volume.to_string(),
        mount_path: f.dir.to_string(),
        read_only: Some(true),
        ..Default::default()
    }));
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.push_server_image().to_string()),
        image_pull_policy: spec.image_pull_policy.map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_string()
        }),
        ports: Some(vec![
            ContainerPort {
                name: Some(HTTP_PORT_NAME.to_string()),
                container_port: i32::from(defaults::PORT),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.to_string()),
                container_port: i32::from(defaults::ADMIN_PORT),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            },
        ]),
        env: Some(push_server_env(vc)),
        resources: Some(push_server_resources(vc)),
        readiness_probe: Some(http_probe(paths::READYZ, 5, 2)),
        liveness_probe: Some(http_probe(paths::HEALTHZ, 10, 3)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn volumes(vc: &ValidatedCluster) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: "tmp".to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }];
    volumes.extend(secret_files(vc).into_iter().map(|f| Volume {
        name: f.volume.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(f.key.name.clone()),
            items: Some(vec![KeyToPath {
                key: f.key.key.clone(),
                path: f.file.to_string(),
                ..Default::default()
            }]),
            default_mode: Some(0o444),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }));
    volumes
}

/// The pod template without the config-hash annotation.
fn pod_template(vc: &ValidatedCluster) -> PodTemplateSpec {
    let overrides = vc.spec.pod_overrides.clone().unwrap_or_default();
    let selector = labels::selector_labels(vc, Component::Server);
    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels::labels(vc, Component::Server));
    let mut annotations = overrides.annotations.clone();
    annotations.extend([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        (
            "prometheus.io/port".to_string(),
            defaults::ADMIN_PORT.to_string(),
        ),
        ("prometheus.io/path".to_string(), paths::METRICS.to_string()),
    ]);
    let spread = if overrides.topology_spread_constraints.is_empty() {
        super::spread::over_zones_and_nodes(&LabelSelector {
            match_labels: Some(selector),
            match_expressions: None,
        })
    } else {
        overrides.topology_spread_constraints.clone()
    };
    let grace = i64::from(vc.spec.drain_seconds) + TERMINATION_MARGIN_SECONDS;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(vc)],
            volumes: Some(volumes(vc)),
            termination_grace_period_seconds: Some(grace),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..Default::default()
            }),
            automount_service_account_token: Some(false),
            topology_spread_constraints: Some(spread),
            node_selector: (!overrides.node_selector.is_empty())
                .then(|| overrides.node_selector.clone()),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            affinity: overrides.affinity.clone(),
            priority_class_name: overrides.priority_class_name.clone(),
            service_account_name: overrides.service_account_name.clone(),
            image_pull_secrets: (!overrides.image_pull_secrets.is_empty())
                .then(|| overrides.image_pull_secrets.clone()),
            ..Default::default()
        }),
    }
}

/// Hash of the pod template and of the referenced Secrets' contents: a change
/// to either rolls the pods. `spec.replicas` is not in it, so scaling never rolls.
pub fn config_hash(template: &PodTemplateSpec, secrets_digest: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(template).unwrap_or_default());
    hasher.update(secrets_digest.as_bytes());
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The push-server Deployment. `secrets_digest` summarises the referenced
/// Secrets' data (empty when rendering without a cluster).
pub fn deployment(vc: &ValidatedCluster, secrets_digest: &str) -> Deployment {
    let mut template = pod_template(vc);
    let hash = config_hash(&template, secrets_digest);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(names::ANNOTATION_CONFIG_HASH.to_string(), hash);
    }
    Deployment {
        metadata: labels::object_meta(vc, &vc.names.server, Component::Server),
        spec: DeploymentSpec {
            replicas: Some(vc.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels::selector_labels(vc, Component::Server)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::String("25%".to_string())),
                }),
            }),
            revision_history_limit: Some(5),
            template,
            ..Default::default()
        },
        status: None,
    }
}
