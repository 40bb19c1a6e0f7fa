//! JWT verification: a connection's token into an [`Identity`].

use std::{fmt, path::Path, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use push_contract::env;
use serde::Deserialize;

use super::identity::{AuthError, Identity, RoomPolicy};
use crate::error::ConfigError;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    /// Room patterns the socket may publish to (the `publish` event); absent: none.
    #[serde(default)]
    publish: Option<Vec<String>>,
}

/// Verifies connection tokens against one key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: Arc<DecodingKey>,
    validation: Validation,
    description: String,
}

impl fmt::Display for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl JwtVerifier {
    /// `None` when neither a secret nor a key file is configured.
    pub fn from_settings(
        secret: Option<&str>,
        public_key_file: Option<&Path>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Option<Self>, ConfigError> {
        let (key, algorithm, description) = match (secret, public_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Exclusive(
                    env::JWT_SECRET,
                    env::JWT_PUBLIC_KEY_FILE,
                ));
            }
            (None, None) => {
                if issuer.is_some() || audience.is_some() {
                    return Err(ConfigError::Requires(env::JWT_ISSUER, env::JWT_SECRET));
                }
                return Ok(None);
            }
            (Some(""), None) => return Err(ConfigError::Empty(env::JWT_SECRET)),
            (Some(secret), None) => (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
                "HS256 secret".to_owned(),
            ),
            (None, Some(path)) => public_key(path)?,
        };
        Ok(Some(Self {
            key: Arc::new(key),
            validation: validation(algorithm, issuer, audience),
            description,
        }))
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::InvalidToken(e.to_string()),
            })?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::InvalidToken("empty sub claim".into()));
        }
        Ok(Identity {
            user: Some(data.claims.sub),
            rooms: RoomPolicy::from_claim(data.claims.rooms)?,
            publish: data
                .claims
                .publish
                .map(|patterns| RoomPolicy::from_claim(Some(patterns)))
                .transpose()?,
            expires_at: Some(data.claims.exp),
        })
    }
}

/// An RSA or EC public key PEM: the key, its algorithm, a description for the log.
fn public_key(path: &Path) -> Result<(DecodingKey, Algorithm, String), ConfigError> {
    let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
        var: env::JWT_PUBLIC_KEY_FILE,
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        Ok((
            key,
            Algorithm::RS256,
            format!("RS256 key {}", path.display()),
        ))
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        Ok((
            key,
            Algorithm::ES256,
            format!("ES256 key {}", path.display()),
        ))
    } else {
        Err(ConfigError::Invalid {
            var: env::JWT_PUBLIC_KEY_FILE,
            reason: format!(
                "{} is neither an RSA nor an EC public key PEM",
                path.display()
            ),
        })
    }
}

/// What a token must carry: a valid signature, `exp` and `sub`, `nbf` when present (5 s
/// leeway), and the configured `iss` / `aud`.
fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = 5;
    validation.validate_nbf = true;
    // A configured issuer/audience must also be present: jsonwebtoken only checks
    // the claims a token carries unless they are required.
    let mut required = vec!["exp", "sub"];
    required.extend(issuer.map(|_| "iss"));
    required.extend(audience.map(|_| "aud"));
    validation.set_required_spec_claims(&required);
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
    }
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[test]
    fn tokens_are_checked() {
        let verifier = JwtVerifier::from_settings(Some("k"), None, None, None)
            .expect("valid")
            .expect("configured");
        let cases = [
            (
                "valid",
                token("k", json!({"sub": "u1", "exp": now() + 60})),
                Ok("u1"),
            ),
            (
                "expired",
                token("k", json!({"sub": "u1", "exp": now() - 3600})),
                Err(AuthError::Expired),
            ),
            (
                "not yet valid",
                token(
                    "k",
                    json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 300}),
                ),
                Err(AuthError::NotYetValid),
            ),
        ];
        for (name, tok, want) in cases {
            let got = verifier.verify(&tok).map(|id| id.user.unwrap_or_default());
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "case {name}");
        }
        for (name, tok) in [
            (
                "wrong key",
                token("other", json!({"sub": "u1", "exp": now() + 60})),
            ),
            ("no exp", token("k", json!({"sub": "u1"}))),
            ("not a jwt", "garbage".to_owned()),
            (
                "bad rooms glob",
                token(
                    "k",
                    json!({"sub": "u", "exp": now() + 60, "rooms": ["a[" ]}),
                ),
            ),
        ] {
            assert!(verifier.verify(&tok).is_err(), "case {name} accepted");
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let verifier =
            JwtVerifier::from_settings(Some("k"), None, Some("auth.example"), Some("push"))
                .expect("valid")
                .expect("configured");
        let base = || json!({"sub": "u1", "exp": now() + 60, "iss": "auth.example", "aud": "push"});
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = base();
            claims[key] = value;
            token("k", claims)
        };
        let without = |key: &str| {
            let mut claims = base();
            if let Some(map) = claims.as_object_mut() {
                map.remove(key);
            }
            token("k", claims)
        };
        let cases = [
            ("matching", token("k", base()), true),
            ("wrong issuer", with("iss", json!("evil.example")), false),
            ("wrong audience", with("aud", json!("other")), false),
            ("missing audience", without("aud"), false),
            ("missing issuer", without("iss"), false),
        ];
        for (name, tok, ok) in cases {
            assert_eq!(verifier.verify(&tok).is_ok(), ok, "case {name}");
        }
        // Without a configured audience, a token's `aud` is not checked.
        let open = JwtVerifier::from_settings(Some("k"), None, None, None)
            .expect("valid")
            .expect("configured");
        assert!(open.verify(&with("aud", json!("anything"))).is_ok());
    }
}
