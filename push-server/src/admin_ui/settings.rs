//! The Admin UI's settings (`PUSH_ADMIN_UI_*`): on only with a password; where its web
//! app is; how a login is checked.

use std::path::{Path, PathBuf};

use push_contract::env;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;

/// The Admin UI's settings.
#[derive(Clone)]
pub struct AdminUi {
    username: String,
    password_digest: [u8; 32],
    pub readonly: bool,
    /// The prebuilt web app, when found.
    pub dir: Option<PathBuf>,
}

impl AdminUi {
    /// `None` without a password (the Admin UI is never open by default).
    pub fn from_settings(
        username: String,
        password: Option<String>,
        readonly: bool,
        dir: Option<PathBuf>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(password) = password else {
            return Ok(None);
        };
        if password.len() < 8 {
            return Err(ConfigError::Invalid {
                var: env::ADMIN_UI_PASSWORD,
                reason: "at least 8 characters".into(),
            });
        }
        if username.is_empty() {
            return Err(ConfigError::Empty(env::ADMIN_UI_USERNAME));
        }
        if let Some(dir) = &dir
            && !dir.join("index.html").is_file()
        {
            return Err(ConfigError::Invalid {
                var: env::ADMIN_UI_DIR,
                reason: format!("{} has no index.html", dir.display()),
            });
        }
        Ok(Some(Self {
            username,
            password_digest: Sha256::digest(password.as_bytes()).into(),
            readonly,
            dir: dir.or_else(find_dir),
        }))
    }

    pub(super) fn admits(&self, auth: &AdminAuth) -> bool {
        // Digests compared, so the time taken says nothing about the password.
        let given: [u8; 32] = Sha256::digest(auth.password.as_bytes()).into();
        auth.username == self.username && given == self.password_digest
    }
}

/// The web app when `PUSH_ADMIN_UI_DIR` is unset: next to the binary in an image, or the
/// repository's `push-server/web` install seen from the binary or the working directory.
fn find_dir() -> Option<PathBuf> {
    const INSTALLED: &str = "push-server/web/node_modules/@socket.io/admin-ui/ui/dist";
    let mut candidates = Vec::new();
    if let Some(exe) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        candidates.push(exe.join("admin-ui"));
        candidates.extend(exe.ancestors().skip(1).take(3).map(|up| up.join(INSTALLED)));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(INSTALLED));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("index.html").is_file())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AdminAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_is_off_without_a_password_and_a_short_one_is_refused() {
        assert!(matches!(
            AdminUi::from_settings("admin".into(), None, true, None),
            Ok(None)
        ));
        let short = AdminUi::from_settings("admin".into(), Some("short".into()), true, None);
        assert!(
            short
                .err()
                .is_some_and(|e| e.to_string().contains(env::ADMIN_UI_PASSWORD))
        );
        let ui = AdminUi::from_settings("admin".into(), Some("long-enough".into()), true, None)
            .ok()
            .flatten()
            .expect("on");
        let auth = |username: &str, password: &str| AdminAuth {
            username: username.into(),
            password: password.into(),
        };
        assert!(ui.admits(&auth("admin", "long-enough")));
        assert!(!ui.admits(&auth("admin", "long-enough ")));
        assert!(!ui.admits(&auth("root", "long-enough")));
        assert!(!ui.admits(&AdminAuth::default()));
    }
}
