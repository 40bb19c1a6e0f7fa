//! Secrets for local mode. A Secret key `<name>/<key>` the manifest references is read
//! from, in order:
//! 1. the environment variable `PUSHCLUSTER_SECRET_<NAME>_<KEY>` (upper case, every
//!    character other than A-Z 0-9 turned into `_`), e.g. `chat-jwt`/`secret` →
//!    `PUSHCLUSTER_SECRET_CHAT_JWT_SECRET`;
//! 2. the file `<secrets-dir>/<name>/<key>` (`--secrets-dir`, the layout of a mounted
//!    Secret; one trailing newline is dropped);
//! 3. generated, for the publish API token only (printed once as `api-token: ...`),
//!    as the operator generates the `<name>-api-token` Secret.
//!
//! Anything else missing is an error naming both places.

use std::path::{Path, PathBuf};

use push_contract::env;
use rand::Rng;

use super::plan::SecretValues;

/// Prefix of the environment variables secrets are read from.
pub const ENV_PREFIX: &str = "PUSHCLUSTER_SECRET_";

/// The environment variable of a Secret key.
pub fn env_name(name: &str, key: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("{ENV_PREFIX}{}_{}", clean(name), clean(key))
}

/// The file of a Secret key under `dir`.
pub fn file_path(dir: &Path, name: &str, key: &str) -> PathBuf {
    dir.join(name).join(key)
}

/// Where the secrets are looked up.
#[derive(Debug, Clone)]
pub struct SecretSources {
    pub dir: PathBuf,
}

impl SecretSources {
    /// (environment variable, file) of a Secret key, for error messages.
    pub fn locate(&self, name: &str, key: &str) -> (String, String) {
        (
            env_name(name, key),
            file_path(&self.dir, name, key).display().to_string(),
        )
    }

    /// One Secret key from the environment or the directory.
    pub fn read(&self, name: &str, key: &str) -> Option<String> {
        if let Ok(value) = std::env::var(env_name(name, key)) {
            return Some(value);
        }
        let raw = std::fs::read_to_string(file_path(&self.dir, name, key)).ok()?;
        Some(raw.strip_suffix('\n').unwrap_or(&raw).to_owned())
    }
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub values: SecretValues,
    /// The API token, when it was generated here (to print once).
    pub generated_api_token: Option<String>,
}

/// Loads every referenced (name, key, variable); generates the API token when missing.
/// `previous` keeps a generated token stable across manifest edits.
pub fn load(
    refs: &[(String, String, String)],
    sources: &SecretSources,
    previous: &SecretValues,
) -> Loaded {
    let mut loaded = Loaded::default();
    for (name, key, var) in refs {
        let id = (name.clone(), key.clone());
        if let Some(value) = sources.read(name, key) {
            loaded.values.insert(id, value);
        } else if var == env::API_TOKEN {
            let token = match previous.get(&id) {
                Some(token) => token.clone(),
                None => {
                    let token = generate_token();
                    loaded.generated_api_token = Some(token.clone());
                    token
                }
            };
            loaded.values.insert(id, token);
        }
    }
    loaded
}

/// 32 random bytes, hex: a bearer token or a Redis password.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_convention() {
        let cases = [
            (
                "dashes become underscores",
                "chat-jwt",
                "secret",
                "PUSHCLUSTER_SECRET_CHAT_JWT_SECRET",
            ),
            (
                "dots too",
                "a.b",
                "tls.key",
                "PUSHCLUSTER_SECRET_A_B_TLS_KEY",
            ),
        ];
        for (case, name, key, want) in cases {
            assert_eq!(env_name(name, key), want, "case {case}");
        }
    }

    #[test]
    fn files_are_read_and_the_api_token_generated() {
        let dir =
            std::env::temp_dir().join(format!("pushcluster-secrets-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("jwt")).expect("mkdir");
        std::fs::write(dir.join("jwt/key"), "s3cret\n").expect("write");
        let sources = SecretSources { dir: dir.clone() };
        let refs = vec![
            (
                "jwt".to_string(),
                "key".to_string(),
                env::JWT_SECRET.to_string(),
            ),
            (
                "chat-api-token".to_string(),
                "token".to_string(),
                env::API_TOKEN.to_string(),
            ),
            (
                "absent".to_string(),
                "key".to_string(),
                env::SESSION_SECRET.to_string(),
            ),
        ];
        let first = load(&refs, &sources, &SecretValues::new());
        assert_eq!(
            first
                .values
                .get(&("jwt".into(), "key".into()))
                .map(String::as_str),
            Some("s3cret")
        );
        let token = first.generated_api_token.clone().expect("generated");
        assert_eq!(token.len(), 64);
        assert!(
            !first.values.contains_key(&("absent".into(), "key".into())),
            "no invented secrets"
        );
        let again = load(&refs, &sources, &first.values);
        assert_eq!(again.generated_api_token, None, "printed only once");
        assert_eq!(
            again.values.get(&("chat-api-token".into(), "token".into())),
            Some(&token)
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
