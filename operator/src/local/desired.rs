//! What the manifest asks for, resolved for this machine: the Deployment builder's env,
//! the secrets it references, the routing, and the fingerprint that rolls nodes.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::EnvVar;
use push_contract::env;

use super::LocalError;
use super::plan::{self, Affinity, LocalOverrides, NodeSlot, SecretValues};
use super::secrets::{self, SecretSources};
use crate::build::deployment::push_server_env;
use crate::validate::ValidatedCluster;

/// The manifest as local mode runs it.
#[derive(Debug, Clone)]
pub struct Desired {
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
    /// URL and password of the local redis-server (managed Redis only).
    pub redis: Option<(String, String)>,
    /// Secrets loaded for the previous version of the manifest (keeps a generated token).
    pub previous: &'a SecretValues,
    pub affinity_override: Option<Affinity>,
}

/// Resolves `cluster`; the second value is an API token generated just now.
pub fn resolve(
    cluster: ValidatedCluster,
    ctx: &Context<'_>,
) -> Result<(Desired, Option<String>), LocalError> {
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
    let jwt_public_key_file = jwt_key_file(&cluster, ctx)?;
    let overrides = LocalOverrides {
        redis: ctx.redis.clone(),
        jwt_public_key_file,
    };
    // Resolving once for a probe slot surfaces every missing secret now, not per node.
    let probe = NodeSlot {
        name: format!("{}-probe", cluster.name),
        client: ([127, 0, 0, 1], 0).into(),
        admin: ([127, 0, 0, 1], 0).into(),
    };
    let locate = |name: &str, key: &str| ctx.sources.locate(name, key);
    let env = plan::node_env(&template, &probe, &overrides, &loaded.values, &locate)?;
    let identity = format!("{}|{}", ctx.binary.display(), cluster.spec.image);
    let desired = Desired {
        replicas: usize::try_from(cluster.spec.replicas).unwrap_or(0),
        drain_seconds: u64::try_from(cluster.spec.drain_seconds).unwrap_or(0),
        fingerprint: plan::fingerprint(&identity, &env),
        affinity,
        template,
        secrets: loaded.values,
        overrides,
        cluster,
    };
    Ok((desired, loaded.generated_api_token))
}

/// Writes the JWT public key Secret to a file, as the pod would see it mounted.
fn jwt_key_file(
    cluster: &ValidatedCluster,
    ctx: &Context<'_>,
) -> Result<Option<PathBuf>, LocalError> {
    let Some(secret) = cluster
        .spec
        .auth
        .jwt
        .as_ref()
        .and_then(|jwt| jwt.public_key_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let Some(pem) = ctx.sources.read(&secret.name, &secret.key) else {
        let (env_name, file) = ctx.sources.locate(&secret.name, &secret.key);
        return Err(plan::PlanError::MissingSecret {
            var: env::JWT_PUBLIC_KEY_FILE.into(),
            name: secret.name.clone(),
            key: secret.key.clone(),
            env_name,
            file,
        }
        .into());
    };
    let path = ctx.workdir.join("jwt-public-key.pem");
    std::fs::write(&path, pem).map_err(|source| LocalError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(Some(path))
}
