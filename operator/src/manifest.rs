//! The one front door for PushCluster manifests read from a file or stdin:
//! `push-operator render`, `push-operator local` and local mode's autoscaler all
//! take their clusters from [`read`], so what one refuses the others refuse, with
//! the same message.
//!
//! Order of the checks, cheapest first, so hostile input fails before the expensive
//! work: size → document count → flow-collection nesting depth → per document:
//! apiVersion/kind → structural schema (what the API server checks, unknown fields
//! included) → typed parse → `validate` (CEL rules and the rest) → duplicate names.

use crate::resources::PushCluster;
use crate::validate::{self, ValidatedCluster, ValidationError};
use push_contract::kube as names;

/// Largest manifest accepted (a PushCluster is a few KiB).
pub const MAX_BYTES: usize = 1 << 20;
/// Most YAML documents in one manifest.
pub const MAX_DOCUMENTS: usize = 64;
/// Deepest nesting of flow collections (`[` / `{`); a PushCluster needs under 10.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is {bytes} bytes; at most {MAX_BYTES} are accepted")]
    TooLarge { bytes: usize },
    #[error("the manifest has more than {MAX_DOCUMENTS} YAML documents")]
    TooManyDocuments,
    #[error("line {line}: collections nested deeper than {MAX_FLOW_DEPTH} levels")]
    TooDeep { line: usize },
    #[error("document {doc}: not valid YAML for a PushCluster: {source}")]
    Parse {
        doc: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error(
        "document {doc}: apiVersion/kind must be {}/{} {}, got {api_version:?} {kind:?}",
        names::GROUP,
        names::VERSION,
        names::KIND
    )]
    WrongKind {
        doc: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {doc} ({name}): invalid PushCluster:\n{}", validate::describe(.errors))]
    Invalid {
        doc: usize,
        name: String,
        errors: Vec<ValidationError>,
    },
    #[error(
        "document {doc}: PushCluster {namespace}/{name} is already defined by document {first}"
    )]
    DuplicateName {
        doc: usize,
        first: usize,
        namespace: String,
        name: String,
    },
    #[error("no PushCluster found in the input")]
    Empty,
    #[error("the manifest defines {count} PushClusters; local mode runs exactly one")]
    NotOne { count: usize },
}

/// Every PushCluster of `text`, validated; `namespace` where metadata.namespace is unset
/// (default `default`).
pub fn read(text: &str, namespace: Option<&str>) -> Result<Vec<ValidatedCluster>, ManifestError> {
    check_bounds(text)?;
    let namespace = namespace.unwrap_or("default");
    let mut clusters: Vec<(usize, ValidatedCluster)> = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        if doc > MAX_DOCUMENTS {
            return Err(ManifestError::TooManyDocuments);
        }
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)
            .map_err(|source| ManifestError::Parse { doc, source })?;
        if value.is_null() {
            continue;
        }
        let cluster = parse_document(doc, &value)?;
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let vc = validate::validate(&cluster, namespace)
            .map_err(|errors| ManifestError::Invalid { doc, name, errors })?;
        if let Some((first, _)) = clusters
            .iter()
            .find(|(_, c)| c.name == vc.name && c.namespace == vc.namespace)
        {
            return Err(ManifestError::DuplicateName {
                doc,
                first: *first,
                namespace: vc.namespace,
                name: vc.name,
            });
        }
        clusters.push((doc, vc));
    }
    if clusters.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(clusters.into_iter().map(|(_, vc)| vc).collect())
}

/// The one PushCluster of `text` (local mode runs one cluster per manifest).
pub fn read_one(text: &str) -> Result<ValidatedCluster, ManifestError> {
    let mut clusters = read(text, None)?;
    match clusters.len() {
        1 => Ok(clusters.remove(0)),
        count => Err(ManifestError::NotOne { count }),
    }
}

fn parse_document(doc: usize, value: &serde_yaml_ng::Value) -> Result<PushCluster, ManifestError> {
    let field = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version != format!("{}/{}", names::GROUP, names::VERSION) || kind != names::KIND {
        return Err(ManifestError::WrongKind {
            doc,
            api_version,
            kind,
        });
    }
    let raw: serde_json::Value = serde_yaml_ng::from_value(value.clone())
        .map_err(|source| ManifestError::Parse { doc, source })?;
    let errors = validate::schema::schema_errors(&raw);
    if !errors.is_empty() {
        let name = raw["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(ManifestError::Invalid { doc, name, errors });
    }
    // Re-read from text: serde_yaml_ng names the failing field's path only when
    // deserializing from a document, not from a Value.
    let text =
        serde_yaml_ng::to_string(value).map_err(|source| ManifestError::Parse { doc, source })?;
    serde_yaml_ng::from_str(&text).map_err(|source| ManifestError::Parse { doc, source })
}

/// Size, document markers and flow nesting, by a linear scan before any YAML parsing
/// (100k nested `[` made the parser spend 19 s before failing).
fn check_bounds(text: &str) -> Result<(), ManifestError> {
    if text.len() > MAX_BYTES {
        return Err(ManifestError::TooLarge { bytes: text.len() });
    }
    let markers = text
        .lines()
        .filter(|line| *line == "---" || line.starts_with("--- "))
        .count();
    if markers > MAX_DOCUMENTS {
        return Err(ManifestError::TooManyDocuments);
    }
    let (mut depth, mut line, mut quote): (usize, usize, Option<char>) = (0, 1, None);
    let mut comment = false;
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                comment = false;
                // Single-quoted and plain scalars end at the line in flow context only
                // when closed; a stray quote must not hide the rest of the file.
                quote = quote.filter(|q| *q == '"');
            }
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(ManifestError::TooDeep { line });
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\n";

    #[test]
    fn refuses_each_bad_manifest_naming_why() {
        let deep = format!(
            "{HEAD}metadata: {{name: a}}\nspec: {}\n",
            "[".repeat(100_000)
        );
        let many = format!("{HEAD}metadata: {{name: a}}\n").repeat(1) + &"---\n{}\n".repeat(65);
        let huge = format!("{HEAD}metadata: {{name: a}}\n# {}\n", "x".repeat(MAX_BYTES));
        let cases: &[(&str, String, &str)] = &[
            (
                "misspelt field",
                format!("{HEAD}metadata: {{name: a}}\nspec: {{drainSecnds: 5}}\n"),
                "spec.drainSecnds",
            ),
            (
                "huge replicas",
                format!("{HEAD}metadata: {{name: a}}\nspec: {{replicas: 1000000000}}\n"),
                "spec.replicas",
            ),
            (
                "negative drain",
                format!("{HEAD}metadata: {{name: a}}\nspec: {{drainSeconds: -1}}\n"),
                "spec.drainSeconds",
            ),
            (
                "no redis server",
                format!(
                    "{HEAD}metadata: {{name: a}}\nspec: {{redis: {{managed: {{replicas: 0}}}}}}\n"
                ),
                "spec.redis.managed.replicas",
            ),
            (
                "more redis servers than 7",
                format!(
                    "{HEAD}metadata: {{name: a}}\nspec: {{redis: {{managed: {{replicas: 8}}}}}}\n"
                ),
                "spec.redis.managed.replicas",
            ),
            (
                "wrong kind",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n".into(),
                "apiVersion/kind must be",
            ),
            (
                "wrong version",
                "apiVersion: pushcluster.dev/v9\nkind: PushCluster\nmetadata: {name: a}\n".into(),
                "apiVersion/kind must be",
            ),
            (
                "duplicate name",
                format!(
                    "{HEAD}metadata: {{name: a}}\nspec: {{}}\n---\n{HEAD}metadata: {{name: a}}\nspec: {{}}\n"
                ),
                "already defined by document 1",
            ),
            ("deep nesting", deep, "nested deeper than 64"),
            ("many documents", many, "more than 64 YAML documents"),
            ("too large", huge, "at most 1048576 are accepted"),
            ("empty", "# nothing\n".into(), "no PushCluster found"),
        ];
        for (case, text, want) in cases {
            let err = read(text, None).expect_err(case).to_string();
            assert!(err.contains(want), "case {case:?}: {err}");
        }
    }

    #[test]
    fn accepts_every_example_and_the_same_name_in_two_namespaces() {
        for example in [
            include_str!("../../examples/chat.yaml"),
            include_str!("../../examples/gateway.yaml"),
        ] {
            assert_eq!(read(example, None).expect("example").len(), 1);
        }
        let two = format!(
            "{HEAD}metadata: {{name: a, namespace: x}}\nspec: {{}}\n---\n{HEAD}metadata: {{name: a, namespace: y}}\nspec: {{}}\n"
        );
        assert_eq!(read(&two, None).expect("two namespaces").len(), 2);
        assert!(matches!(
            read_one(&two),
            Err(ManifestError::NotOne { count: 2 })
        ));
    }

    #[test]
    fn quotes_and_comments_do_not_count_as_nesting() {
        let text = format!(
            "{HEAD}metadata: {{name: a, annotations: {{x: '{}', y: \"{}\"}}}}\nspec: {{}}\n# {}\n",
            "[".repeat(200),
            "{".repeat(200),
            "[".repeat(200)
        );
        assert_eq!(read(&text, None).expect("brackets in strings").len(), 1);
    }
}
