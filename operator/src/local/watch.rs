//! The manifest file: read through the operator's one front door ([`crate::manifest`],
//! the same checks and messages as `push-operator render`) and polled for edits
//! (content digest, so a touch without change does nothing).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::validate::ValidatedCluster;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    // Not a `source`: the refusal is the whole message, printed once.
    #[error("{path}: {refusal}")]
    Refused {
        path: PathBuf,
        refusal: crate::manifest::ManifestError,
    },
}

/// Reads a manifest's text through the front door: its one PushCluster, validated.
pub fn parse(path: &Path, text: &str) -> Result<ValidatedCluster, ManifestError> {
    crate::manifest::read_one(text).map_err(|refusal| ManifestError::Refused {
        path: path.to_owned(),
        refusal,
    })
}

/// Polls one file for content changes.
pub struct ManifestWatch {
    path: PathBuf,
    digest: Option<[u8; 32]>,
}

impl ManifestWatch {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            digest: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text when it differs from the last call's (the first call always returns it).
    /// A file that cannot be read right now (an editor replacing it) counts as unchanged.
    pub fn changed(&mut self) -> Result<Option<String>, ManifestError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(source) if self.digest.is_none() => {
                return Err(ManifestError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
            Err(_) => return Ok(None),
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if self.digest == Some(digest) {
            return Ok(None);
        }
        self.digest = Some(digest);
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_what_is_wrong() {
        let path = Path::new("m.yaml");
        let cases = [
            ("not yaml", "{", "not valid YAML for a PushCluster"),
            (
                "misspelt field",
                "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: a}\nspec: {drainSecnds: 5}\n",
                "spec.drainSecnds",
            ),
            (
                "CEL rule: two redis modes",
                "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: a}\nspec: {redis: {managed: {}, external: {url: 'redis://x'}}}\n",
                "set exactly one of managed or external",
            ),
        ];
        for (name, text, want) in cases {
            let err = parse(path, text).expect_err(name).to_string();
            assert!(err.contains(want), "case {name}: {err}");
        }
        let ok = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: chat}\nspec: {replicas: 3}\n";
        assert_eq!(parse(path, ok).expect("valid").spec.replicas, 3);
    }

    #[test]
    fn changes_are_seen_once() {
        let path =
            std::env::temp_dir().join(format!("pushcluster-watch-{}.yaml", std::process::id()));
        std::fs::write(&path, "a").expect("write");
        let mut watch = ManifestWatch::new(&path);
        assert_eq!(watch.changed().expect("read").as_deref(), Some("a"));
        assert_eq!(watch.changed().expect("read"), None);
        std::fs::write(&path, "b").expect("write");
        assert_eq!(watch.changed().expect("read").as_deref(), Some("b"));
        std::fs::remove_file(&path).expect("cleanup");
    }
}
