//! Pure planning of local mode: which routing the manifest asks for, the environment of
//! each push-server process (from the Deployment builder's env), and the next step that
//! moves the running nodes toward the manifest (scale out, roll, scale in).
//!
//! Nothing here touches processes, files or the network; the supervisor feeds it
//! snapshots and carries out what it returns.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::EnvVar;
use push_contract::{defaults, env};

use crate::objects::deployment::sentinel_env;
use crate::resources::{ExposureSpec, IngressAffinity};

/// How nginx keeps a client on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// A cookie names the node (gateway session persistence, ingress cookie affinity).
    Cookie { name: String },
    /// Consistent hash of the client address (Service ClientIP, ingress ipHash).
    ClientAddress,
    /// No stickiness at all: round robin (only for proving the tests can fail).
    Off,
}

/// Errors of planning; each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("affinity cookie name {0:?} must be 1-64 characters of A-Z a-z 0-9 _ -")]
    BadCookieName(String),
    #[error("environment variable {var}: {reason}")]
    UnsupportedEnv { var: String, reason: String },
    #[error(
        "spec.redis.managed.replicas is {requested}, local mode runs {running}: restart local mode to change spec.redis.managed.replicas"
    )]
    RedisReplicasChanged { running: usize, requested: usize },
    #[error(
        "secret {name}/{key} (for {var}) not found: set env {env_name} or create the file {file}"
    )]
    MissingSecret {
        var: String,
        name: String,
        key: String,
        env_name: String,
        file: String,
    },
}

/// The routing the manifest's exposure asks for, as nginx can do it.
pub fn affinity_for(exposure: &ExposureSpec) -> Result<Affinity, PlanError> {
    let cookie = |name: &str| {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Affinity::Cookie {
                name: name.to_owned(),
            })
        } else {
            Err(PlanError::BadCookieName(name.to_owned()))
        }
    };
    if let Some(gateway) = &exposure.gateway {
        return cookie(&gateway.cookie_name);
    }
    if let Some(ingress) = &exposure.ingress {
        return match ingress.affinity {
            IngressAffinity::Cookie => cookie(&ingress.cookie_name),
            IngressAffinity::IpHash => Ok(Affinity::ClientAddress),
        };
    }
    Ok(Affinity::ClientAddress)
}

/// One push-server process slot: its name (the pod name's counterpart) and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlot {
    pub name: String,
    pub client: SocketAddr,
    pub admin: SocketAddr,
}

/// The managed Redis local mode runs, as push-servers reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRedis {
    /// `redis://127.0.0.1:PORT/0?protocol=resp3` of the (initial) primary.
    pub url: String,
    pub password: String,
    /// Sentinels watching the primary (`spec.redis.managed.replicas` > 1); empty for one
    /// redis-server.
    pub sentinels: Vec<SocketAddr>,
    /// The `spec.redis.managed.replicas` it runs (a change needs a restart of local mode).
    pub replicas: usize,
}

/// Values local mode supplies instead of what Kubernetes would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOverrides {
    /// The redis-server(s) local mode runs (managed Redis).
    pub redis: Option<LocalRedis>,
    /// Where each Secret file was written (instead of the pod's mounted file), by the
    /// variable that names it (`objects::deployment::secret_files`).
    pub files: Vec<(String, PathBuf)>,
}

/// Secret values by (Secret name, key).
pub type SecretValues = BTreeMap<(String, String), String>;

/// Variables local mode always sets itself: the builder's values for them describe a pod.
const LOCAL_VARS: &[&str] = &[env::LISTEN, env::ADMIN_LISTEN, env::NODE_ID, env::CLIENT_JS];

/// The environment of one push-server process: the Deployment builder's env with
/// secretKeyRefs resolved, the pod name replaced by the node name, and the listeners,
/// Redis and key file pointed at what runs on this machine.
pub fn node_env(
    template: &[EnvVar],
    slot: &NodeSlot,
    overrides: &LocalOverrides,
    secrets: &SecretValues,
    locate: &dyn Fn(&str, &str) -> (String, String),
) -> Result<Vec<(String, String)>, PlanError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut overridden: Vec<&str> = LOCAL_VARS.to_vec();
    if overrides.redis.is_some() {
        overridden.extend([
            env::REDIS_URL,
            env::REDIS_PASSWORD,
            env::REDIS_SENTINELS,
            env::REDIS_SENTINEL_MASTER,
            env::REDIS_CLUSTER,
            env::REDIS_MIN_REPLICAS,
        ]);
    }
    overridden.extend(overrides.files.iter().map(|(var, _)| var.as_str()));
    for var in template {
        if overridden.contains(&var.name.as_str()) {
            continue;
        }
        out.push((var.name.clone(), resolve(var, slot, secrets, locate)?));
    }
    out.push((env::LISTEN.into(), slot.client.to_string()));
    out.push((env::ADMIN_LISTEN.into(), slot.admin.to_string()));
    out.push((env::NODE_ID.into(), slot.name.clone()));
    if let Some(redis) = &overrides.redis {
        out.push((env::REDIS_URL.into(), redis.url.clone()));
        out.push((env::REDIS_PASSWORD.into(), redis.password.clone()));
        if !redis.sentinels.is_empty() {
            let sentinels: Vec<String> = redis.sentinels.iter().map(|a| a.to_string()).collect();
            for var in sentinel_env(&sentinels, defaults::REDIS_SENTINEL_MASTER, 1) {
                out.push((var.name, var.value.unwrap_or_default()));
            }
        }
    }
    for (var, path) in &overrides.files {
        out.push((var.clone(), path.display().to_string()));
    }
    Ok(out)
}

fn resolve(
    var: &EnvVar,
    slot: &NodeSlot,
    secrets: &SecretValues,
    locate: &dyn Fn(&str, &str) -> (String, String),
) -> Result<String, PlanError> {
    let unsupported = |reason: &str| PlanError::UnsupportedEnv {
        var: var.name.clone(),
        reason: reason.to_owned(),
    };
    let Some(from) = &var.value_from else {
        return Ok(var.value.clone().unwrap_or_default());
    };
    if let Some(secret) = &from.secret_key_ref {
        let key = (secret.name.clone(), secret.key.clone());
        return match secrets.get(&key) {
            Some(value) => Ok(value.clone()),
            None if secret.optional == Some(true) => Ok(String::new()),
            None => {
                let (env_name, file) = locate(&secret.name, &secret.key);
                Err(PlanError::MissingSecret {
                    var: var.name.clone(),
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    env_name,
                    file,
                })
            }
        };
    }
    if let Some(field) = &from.field_ref {
        return match field.field_path.as_str() {
            "metadata.name" => Ok(slot.name.clone()),
            "status.podIP" | "status.hostIP" => Ok(slot.client.ip().to_string()),
            other => Err(unsupported(&format!(
                "fieldRef {other} has no local counterpart"
            ))),
        };
    }
    Err(unsupported(
        "only value, secretKeyRef and fieldRef are supported locally",
    ))
}

/// Points a node's environment at the (new) ports of `slot`.
pub fn rebind(env: &mut [(String, String)], slot: &NodeSlot) {
    for (name, value) in env.iter_mut() {
        if name == env::LISTEN {
            *value = slot.client.to_string();
        } else if name == env::ADMIN_LISTEN {
            *value = slot.admin.to_string();
        }
    }
}

/// Every (Secret name, key, variable) the template references.
pub fn secret_refs(template: &[EnvVar]) -> Vec<(String, String, String)> {
    template
        .iter()
        .filter_map(|var| {
            let secret = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((secret.name.clone(), secret.key.clone(), var.name.clone()))
        })
        .collect()
}

/// A digest of everything that makes a node's configuration: a change rolls the nodes.
pub fn fingerprint(binary: &str, env: &[(String, String)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    binary.hash(&mut hasher);
    for (name, value) in env {
        if [env::LISTEN, env::ADMIN_LISTEN, env::NODE_ID].contains(&name.as_str()) {
            continue;
        }
        (name, value).hash(&mut hasher);
    }
    hasher.finish()
}

/// What the supervisor knows of one running node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// Creation order; newer nodes are removed first (like a ReplicaSet's newest pods).
    pub ordinal: u64,
    pub fingerprint: u64,
    pub ready: bool,
    pub draining: bool,
}

/// The next step toward the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// New nodes to start with the current configuration.
    pub start: usize,
    /// Nodes to drain (SIGTERM), in order.
    pub drain: Vec<String>,
}

/// Moves `nodes` toward `desired` nodes running configuration `fingerprint`.
///
/// Rolling replace surges: replacements start first, and the outdated nodes drain only
/// once `desired` up-to-date nodes are ready, so capacity never drops. Scale-in drains
/// the names in `prefer` first (the autoscaler's choice), then nodes that are not
/// ready, then the newest.
pub fn next_step(nodes: &[NodeView], desired: usize, fingerprint: u64, prefer: &[String]) -> Step {
    let active: Vec<&NodeView> = nodes.iter().filter(|n| !n.draining).collect();
    let (current, outdated): (Vec<&NodeView>, Vec<&NodeView>) =
        active.iter().partition(|n| n.fingerprint == fingerprint);
    let start = desired.saturating_sub(current.len());
    let ready_current = current.iter().filter(|n| n.ready).count();
    let mut drain: Vec<String> = Vec::new();
    if !outdated.is_empty() && (ready_current >= desired || desired == 0) {
        drain.extend(outdated.iter().map(|n| n.name.clone()));
    }
    if current.len() > desired {
        let mut victims = current.clone();
        victims.sort_by_key(|n| {
            let preferred = prefer.iter().position(|p| *p == n.name);
            (
                preferred.unwrap_or(usize::MAX),
                n.ready,
                std::cmp::Reverse(n.ordinal),
            )
        });
        drain.extend(
            victims
                .iter()
                .take(current.len() - desired)
                .map(|n| n.name.clone()),
        );
    }
    Step { start, drain }
}

#[cfg(test)]
mod tests;
