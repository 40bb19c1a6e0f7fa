//! What the manifest asks for, resolved for this machine: the Deployment builder's env,
//! the secrets it references, the routing, and the fingerprint that rolls nodes.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::EnvVar;
use push_contract::env;

use super::error::LocalError;
use super::plan::{self, Affinity, LocalOverrides, LocalRedis, NodeSlot, SecretValues};
use super::secrets::{self, SecretSources};
use crate::objects::deployment::{self, push_server_env};
use crate::validate::ValidatedCluster;

/// The manifest as local mode runs it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub cluster: ValidatedCluster,
    pub replicas: usize,
    pub affinity: Affinity,
    pub template: Vec<EnvVar>,
    pub secrets: SecretValues,
    pub overrides: LocalOverrides,
    pub fingerprint: u64,
    pub drain_seconds: u64,
}

/// Inputs that do not come from the manifest.
pub struct Context<'a> {
    pub binary: &'a Path,
    pub workdir: &'a Path,
    pub sources: &'a SecretSources,
    /// The redis-server(s) local mode runs (managed Redis only).
    pub redis: Option<LocalRedis>,
    /// Secrets loaded for the previous version of the manifest (keeps a generated token).
    pub previous: &'a SecretValues,
    pub affinity_override: Option<Affinity>,
}

/// Resolves `cluster`; the second value is an API token generated just now.
pub fn resolve(
    mut cluster: ValidatedCluster,
    ctx: &Context<'_>,
) -> Result<(Resolved, Option<String>), LocalError> {
    // Local mode is what a person opens in a browser: the demo page is on unless the
    // manifest says otherwise (Kubernetes: off unless it says so).
    cluster.spec.demo_page.get_or_insert(true);
    if let (Some(running), Some(managed)) = (&ctx.redis, &cluster.spec.redis.managed) {
        let requested = usize::try_from(managed.replicas).unwrap_or(1);
        if requested != running.replicas {
            return Err(plan::PlanError::RedisReplicasChanged {
                running: running.replicas,
                requested,
            }
            .into());
        }
    }
    let affinity = match &ctx.affinity_override {
        Some(affinity) => affinity.clone(),
        None => plan::affinity_for(&cluster.spec.exposure)?,
    };
    let template = push_server_env(&cluster);
    let refs: Vec<_> = plan::secret_refs(&template)
        .into_iter()
        .filter(|(_, _, var)| !(ctx.redis.is_some() && var == env::REDIS_PASSWORD))
        .collect();
    let loaded = secrets::load(&refs, ctx.sources, ctx.previous);
    let overrides = LocalOverrides {
        redis: ctx.redis.clone(),
        files: secret_files(&cluster, ctx)?,
    };
    // Resolving once for a probe slot surfaces every missing secret now, not per node.
    let probe = NodeSlot {
        name: format!("{}-probe", cluster.name),
        client: ([127, 0, 0, 1], 0).into(),
        admin: ([127, 0, 0, 1], 0).into(),
    };
    let locate = |name: &str, key: &str| ctx.sources.locate(name, key);
    let env = plan::node_env(&template, &probe, &overrides, &loaded.values, &locate)?;
    let identity = format!(
        "{}|{}",
        ctx.binary.display(),
        cluster.spec.push_server_image()
    );
    let resolved = Resolved {
        replicas: usize::try_from(cluster.spec.replicas).unwrap_or(0),
        drain_seconds: u64::try_from(cluster.spec.drain_seconds).unwrap_or(0),
        fingerprint: plan::fingerprint(&identity, &env),
        affinity,
        template,
        secrets: loaded.values,
        overrides,
        cluster,
    };
    Ok((resolved, loaded.generated_api_token))
}

/// Writes each Secret push-server reads as a file (`deployment::secret_files`) to the
/// work directory, as the pod would see it mounted.
fn secret_files(
    cluster: &ValidatedCluster,
    ctx: &Context<'_>,
) -> Result<Vec<(String, PathBuf)>, LocalError> {
    let mut written = Vec::new();
    for file in deployment::secret_files(cluster) {
        let secret = &file.key;
        let Some(pem) = ctx.sources.read(&secret.name, &secret.key) else {
            let (env_name, path) = ctx.sources.locate(&secret.name, &secret.key);
            return Err(plan::PlanError::MissingSecret {
                var: file.var.into(),
                name: secret.name.clone(),
                key: secret.key.clone(),
                env_name,
                file: path,
            }
            .into());
        };
        let path = ctx.workdir.join(format!("{}.pem", file.volume));
        std::fs::write(&path, pem).map_err(|source| LocalError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        written.push((file.var.to_owned(), path));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::watch::parse;

    const CHAT: &str = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: chat}\nspec: {replicas: 3, drainSeconds: 5}\n";

    fn ctx<'a>(sources: &'a SecretSources, previous: &'a SecretValues) -> Context<'a> {
        Context {
            binary: Path::new("/bin/push-server"),
            workdir: Path::new("/nonexistent"),
            sources,
            redis: Some(LocalRedis {
                url: "redis://127.0.0.1:7000/0?protocol=resp3".into(),
                password: "pw".into(),
                sentinels: Vec::new(),
                replicas: 1,
            }),
            previous,
            affinity_override: None,
        }
    }

    fn sources() -> SecretSources {
        SecretSources {
            dir: PathBuf::from("/nonexistent/secrets"),
        }
    }

    #[test]
    fn the_deployment_env_is_what_nodes_run() {
        let (sources, previous) = (sources(), SecretValues::new());
        let cluster = parse(Path::new("chat.yaml"), CHAT).expect("valid");
        let (resolved, token) =
            resolve(cluster.clone(), &ctx(&sources, &previous)).expect("resolves");
        assert_eq!(resolved.replicas, 3);
        assert_eq!(resolved.drain_seconds, 5);
        assert_eq!(
            resolved.affinity,
            Affinity::ClientAddress,
            "service exposure"
        );
        assert_eq!(
            resolved.template,
            push_server_env(&resolved.cluster),
            "the controller's env, not a copy"
        );
        assert_eq!(
            resolved.cluster.spec.demo_page,
            Some(true),
            "local mode serves the demo page unless the manifest says not to"
        );
        let node = plan::node_env(
            &resolved.template,
            &NodeSlot {
                name: "chat-0".into(),
                client: ([127, 0, 0, 1], 4000).into(),
                admin: ([127, 0, 0, 1], 4001).into(),
            },
            &resolved.overrides,
            &resolved.secrets,
            &|name, key| sources.locate(name, key),
        )
        .expect("node env");
        let var = |name: &str| {
            node.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(var(env::DRAIN_SECONDS), Some("5"));
        assert_eq!(
            var(env::HISTORY_MAX_MESSAGES),
            Some("1000"),
            "default history"
        );
        assert_eq!(
            var(env::HISTORY_TTL_SECONDS),
            Some("300"),
            "default history"
        );
        assert_eq!(var(env::MAX_CONNECTIONS), Some("0"), "default admission");
        assert_eq!(
            var(env::HANDSHAKES_PER_SECOND),
            Some("1000"),
            "default admission"
        );
        assert_eq!(
            var(env::HEADER_TIMEOUT_SECONDS),
            Some("10"),
            "default admission"
        );
        let token = token.expect("no token Secret named: generated");
        assert_eq!(
            resolved
                .secrets
                .get(&(cluster.names.api_token_secret.clone(), "token".into())),
            Some(&token)
        );
        // Same manifest again (an edit elsewhere): same token, not printed again.
        let (again, printed) =
            resolve(cluster, &ctx(&sources, &resolved.secrets)).expect("resolves");
        assert_eq!(printed, None);
        assert_eq!(again.fingerprint, resolved.fingerprint);
    }

    #[test]
    fn config_edits_change_the_fingerprint_and_replicas_do_not() {
        let (sources, none) = (sources(), SecretValues::new());
        let parsed = |text: &str| parse(Path::new("m.yaml"), text).expect("valid");
        let base = resolve(parsed(CHAT), &ctx(&sources, &none))
            .expect("resolves")
            .0;
        let cases = [
            (
                "replicas only",
                CHAT.replace("replicas: 3", "replicas: 5"),
                false,
            ),
            (
                "drain window",
                CHAT.replace("drainSeconds: 5", "drainSeconds: 6"),
                true,
            ),
            (
                "image",
                CHAT.replace("replicas: 3", "replicas: 3, image: other:1"),
                true,
            ),
            (
                "history size",
                CHAT.replace("replicas: 3", "replicas: 3, history: {maxMessages: 10}"),
                true,
            ),
            (
                "history ttl",
                CHAT.replace("replicas: 3", "replicas: 3, history: {ttlSeconds: 10}"),
                true,
            ),
            (
                "history off",
                CHAT.replace("replicas: 3", "replicas: 3, history: {enabled: false}"),
                true,
            ),
            (
                "connection cap",
                CHAT.replace(
                    "replicas: 3",
                    "replicas: 3, admission: {maxConnectionsPerPod: 100}",
                ),
                true,
            ),
            (
                "handshake rate",
                CHAT.replace(
                    "replicas: 3",
                    "replicas: 3, admission: {handshakesPerSecond: 10}",
                ),
                true,
            ),
            (
                "header timeout",
                CHAT.replace(
                    "replicas: 3",
                    "replicas: 3, admission: {headerTimeoutSeconds: 5}",
                ),
                true,
            ),
        ];
        for (name, text, rolls) in cases {
            // With the previous secrets, as the supervisor does: the generated token stays.
            let edited = resolve(parsed(&text), &ctx(&sources, &base.secrets))
                .expect("resolves")
                .0;
            assert_eq!(edited.fingerprint != base.fingerprint, rolls, "case {name}");
        }
    }

    #[test]
    fn redis_replicas_change_only_with_a_restart() {
        let (sources, none) = (sources(), SecretValues::new());
        // (case, manifest, running replicas, refused)
        let cases = [
            ("default is one", CHAT.to_string(), 1, false),
            (
                "same replicas",
                CHAT.replace(
                    "drainSeconds: 5",
                    "drainSeconds: 5, redis: {managed: {replicas: 3}}",
                ),
                3,
                false,
            ),
            (
                "one to three",
                CHAT.replace(
                    "drainSeconds: 5",
                    "drainSeconds: 5, redis: {managed: {replicas: 3}}",
                ),
                1,
                true,
            ),
            ("three to the default", CHAT.to_string(), 3, true),
        ];
        for (case, text, running, refused) in cases {
            let cluster = parse(Path::new("m.yaml"), &text).expect("valid");
            let mut ctx = ctx(&sources, &none);
            if let Some(redis) = ctx.redis.as_mut() {
                redis.replicas = running;
            }
            match resolve(cluster, &ctx) {
                Ok(_) => assert!(!refused, "case {case:?}: accepted"),
                Err(e) => {
                    assert!(refused, "case {case:?}: {e}");
                    let msg = e.to_string();
                    assert!(
                        msg.contains("restart local mode to change spec.redis.managed.replicas"),
                        "case {case:?}: {msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_missing_jwt_secret_is_an_error_naming_where_to_put_it() {
        let (sources, previous) = (sources(), SecretValues::new());
        let text = CHAT.replace(
            "drainSeconds: 5",
            "drainSeconds: 5, auth: {jwt: {secretRef: {name: chat-jwt, key: secret}}}",
        );
        let cluster = parse(Path::new("m.yaml"), &text).expect("valid");
        let err = resolve(cluster, &ctx(&sources, &previous)).expect_err("missing secret");
        let msg = err.to_string();
        assert!(msg.contains("PUSHCLUSTER_SECRET_CHAT_JWT_SECRET"), "{msg}");
        assert!(
            msg.contains("/nonexistent/secrets/chat-jwt/secret"),
            "{msg}"
        );
    }
}
