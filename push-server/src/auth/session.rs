//! Shared sessions of the classic recipe: an express-session cookie whose session lives
//! in Redis (connect-redis). The cookie is `s:<id>.<base64 HMAC-SHA256(id)>`, URI-encoded;
//! the session is JSON at `<prefix><id>`.

use crate::redis_link::RedisLink;
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use push_contract::env;
use sha2::Sha256;

use super::identity::{AuthError, Identity, RoomPolicy};
use crate::error::ConfigError;

/// Shared-session settings (express-session + connect-redis).
#[derive(Clone)]
pub struct SessionConfig {
    pub secret: String,
    pub cookie: String,
    pub prefix: String,
    pub user_path: String,
}

impl SessionConfig {
    /// `None` when no session secret is configured. Sessions live in Redis, so they
    /// need `redis_configured`.
    pub fn from_settings(
        secret: Option<String>,
        cookie: String,
        prefix: String,
        user_path: String,
        redis_configured: bool,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(secret) = secret else {
            return Ok(None);
        };
        if secret.is_empty() {
            return Err(ConfigError::Empty(env::SESSION_SECRET));
        }
        if !redis_configured {
            return Err(ConfigError::Requires(env::SESSION_SECRET, env::REDIS_URL));
        }
        if cookie.is_empty() {
            return Err(ConfigError::Empty(env::SESSION_COOKIE));
        }
        if user_path.is_empty() {
            return Err(ConfigError::Empty(env::SESSION_USER_PATH));
        }
        Ok(Some(Self {
            secret,
            cookie,
            prefix,
            user_path,
        }))
    }
}

/// The session id inside a signed cookie value, or `None` when the signature is wrong.
pub fn unsign<'a>(value: &'a str, secret: &str) -> Option<&'a str> {
    let signed = value.strip_prefix("s:")?;
    let (id, signature) = signed.rsplit_once('.')?;
    // express-session strips the base64 padding; accept it either way.
    let signature = STANDARD_NO_PAD
        .decode(signature.trim_end_matches('='))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(id.as_bytes());
    mac.verify_slice(&signature).ok()?;
    Some(id)
}

/// The decoded value of cookie `name` in the request's `Cookie` headers. A value whose
/// percent-encoding is not UTF-8 is decoded lossily: it is present, and then fails the
/// signature check (not "no session cookie").
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            percent_decode_str(v.trim_matches('"'))
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// The user id at a dotted path (`passport.user`) of a stored session.
pub fn user_at(session: &serde_json::Value, path: &str) -> Option<String> {
    let value = path
        .split('.')
        .try_fold(session, |node, key| node.get(key))?;
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Loads and checks the session a handshake's cookie points to.
pub async fn identify(
    config: &SessionConfig,
    link: &RedisLink,
    headers: &HeaderMap,
) -> Result<Identity, AuthError> {
    let cookie = cookie_value(headers, &config.cookie).ok_or(AuthError::MissingCredentials)?;
    let id = unsign(&cookie, &config.secret).ok_or(AuthError::InvalidSession("bad signature"))?;
    let stored = link
        .get_anywhere(&format!("{}{id}", config.prefix))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "session lookup failed");
            AuthError::SessionStoreDown
        })?;
    let stored = stored.ok_or(AuthError::InvalidSession("unknown or expired session"))?;
    let session: serde_json::Value = serde_json::from_str(&stored)
        .map_err(|_| AuthError::InvalidSession("stored session is not JSON"))?;
    let user = user_at(&session, &config.user_path)
        .ok_or(AuthError::InvalidSession("session has no user"))?;
    // The session store decides a session's lifetime; the connection does not expire.
    Ok(Identity {
        user: Some(user),
        rooms: RoomPolicy::Any,
        // A session names no rooms to publish to (no rule for them yet).
        publish: None,
        expires_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Signed by Node the way `cookie-signature` (express-session's signer) does:
    /// `'s:abc123.' + createHmac('sha256', 'keyboard cat').update('abc123').digest('base64').replace(/=+$/, '')`.
    const SIGNED_BY_NODE: &str = "s:abc123.L3URH8qEUlRhbJErOXuJ/R5i21GJUY02kERb2c2p5w0";

    #[test]
    fn unsign_checks_the_signature() {
        let cases = [
            (
                "signed by node",
                SIGNED_BY_NODE,
                "keyboard cat",
                Some("abc123"),
            ),
            ("wrong secret", SIGNED_BY_NODE, "other", None),
            (
                "tampered id",
                "s:abc124.L3URH8qEUlRhbJErOXuJ/R5i21GJUY02kERb2c2p5w0",
                "keyboard cat",
                None,
            ),
            ("unsigned", "abc123", "keyboard cat", None),
            ("no signature", "s:abc123", "keyboard cat", None),
            ("garbage signature", "s:abc123.!!!", "keyboard cat", None),
        ];
        for (name, value, secret, want) in cases {
            assert_eq!(unsign(value, secret), want, "case {name}");
        }
    }

    #[test]
    fn cookie_is_found_and_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; connect.sid=s%3Aabc.def%2B%2F; b=2"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            cookie_value(&headers, "connect.sid").as_deref(),
            Some("s:abc.def+/")
        );
        assert_eq!(cookie_value(&headers, "missing"), None);
        // %AA is not UTF-8: present (and then refused by the signature check).
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "connect.sid=s%3Aabc.de%AA".parse().expect("header"),
        );
        let value = cookie_value(&headers, "connect.sid").expect("present");
        assert_eq!(unsign(&value, "secret"), None);
    }

    #[test]
    fn user_is_read_at_the_path() {
        let session = json!({"cookie": {}, "passport": {"user": "alice"}, "n": {"id": 7}});
        let cases = [
            ("string", "passport.user", Some("alice")),
            ("number", "n.id", Some("7")),
            ("missing", "passport.nobody", None),
            ("object", "passport", None),
        ];
        for (name, path, want) in cases {
            assert_eq!(user_at(&session, path).as_deref(), want, "case {name}");
        }
    }
}
