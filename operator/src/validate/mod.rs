//! `PushCluster` → [`ValidatedCluster`], the only input the builders accept.
//!
//! Runs the CRD's own CEL rules client-side (so `render` rejects what the API
//! server would) and then the checks CEL cannot express: names too long for
//! the derived objects, env vars that collide with the operator's own,
//! combinations a mode does not support. Every error names the field.

pub mod schema;

use crate::resources::{DisruptionSpec, ExposureSpec, PushCluster, PushClusterSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// Longest StatefulSet name: the controller-revision-hash label value
/// `<name>-<10 char hash>` must fit a 63-character label value.
const MAX_STATEFULSET_NAME: usize = 52;
/// Longest DNS-1035 label (Service names).
const MAX_DNS_LABEL: usize = 63;

/// Why a PushCluster cannot be turned into objects. The message starts with the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `spec.exposure.ingress.affinity`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    /// `field: message`, without repeating the field when the (CEL) message already starts with it.
    fn render(&self) -> String {
        if self.message.starts_with(&self.field) {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }

    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Names of every object derived from one PushCluster, computed once here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedNames {
    /// Deployment, client Service, PodDisruptionBudget, Ingress/HTTPRoute.
    pub server: String,
    /// Headless Service of the push pods (per-pod DNS, metrics scraping).
    pub headless: String,
    /// The server API Service: the push pods' server port (publish API, metrics), for
    /// backends inside the cluster; nothing exposes it.
    pub api: String,
    /// Managed Redis StatefulSet, Service, PodDisruptionBudget and NetworkPolicy.
    pub redis: String,
    /// Headless Service naming each Redis pod (`<pod>.<it>.<ns>.svc`) with replicas.
    pub redis_pods: String,
    /// The Sentinels of a replicated managed Redis: StatefulSet, Service, budget, policy.
    pub redis_sentinel: String,
    /// Generated managed-Redis password Secret.
    pub redis_password_secret: String,
    /// Generated publish API token Secret.
    pub api_token_secret: String,
}

impl DerivedNames {
    pub fn for_cluster(name: &str) -> Self {
        Self {
            server: name.to_string(),
            headless: format!("{name}-headless"),
            api: format!("{name}-api"),
            redis: format!("{name}-redis"),
            redis_pods: format!("{name}-redis-pods"),
            redis_sentinel: format!("{name}-redis-sentinel"),
            redis_password_secret: format!("{name}-redis-password"),
            api_token_secret: format!("{name}-api-token"),
        }
    }
}

/// A PushCluster that passed every check: the builders trust it as is.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    pub name: String,
    pub namespace: String,
    /// `None` when rendering a file that never reached an API server.
    pub uid: Option<String>,
    pub generation: Option<i64>,
    /// Controller owner reference put on every derived object (`None` without a uid).
    pub owner_reference: Option<OwnerReference>,
    /// The spec with serde defaults resolved.
    pub spec: PushClusterSpec,
    pub names: DerivedNames,
}

/// Validate a PushCluster. `default_namespace` is used when metadata.namespace is unset.
pub fn validate(
    cluster: &PushCluster,
    default_namespace: &str,
) -> Result<ValidatedCluster, Vec<ValidationError>> {
    let mut errors = cel_errors(cluster);
    let name = cluster.metadata.name.clone().unwrap_or_default();
    errors.extend(name_errors(&name));
    errors.extend(replicated_redis_name_errors(&name, &cluster.spec));
    errors.extend(spec_errors(&cluster.spec));
    if !errors.is_empty() {
        return Err(errors);
    }
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace.to_string());
    Ok(ValidatedCluster {
        names: DerivedNames::for_cluster(&name),
        namespace,
        uid: cluster.metadata.uid.clone(),
        generation: cluster.metadata.generation,
        owner_reference: cluster.controller_owner_ref(&()),
        spec: cluster.spec.clone(),
        name: cluster.name_any(),
    })
}

/// Join errors into one message, one error per line.
pub fn describe(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The CRD's CEL rules, evaluated as the API server would on create.
fn cel_errors(cluster: &PushCluster) -> Vec<ValidationError> {
    match kube::core::cel::validate_cel(cluster) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = if e.field_path.is_empty() {
                    "spec".to_string()
                } else {
                    e.field_path.trim_start_matches('.').to_string()
                };
                ValidationError::new(field, e.message)
            })
            .collect(),
    }
}

/// The name must be a DNS-1035 label short enough for every derived name.
fn name_errors(name: &str) -> Vec<ValidationError> {
    let field = "metadata.name";
    if name.is_empty() {
        return vec![ValidationError::new(field, "is required")];
    }
    let dns1035 = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !dns1035 {
        return vec![ValidationError::new(
            field,
            format!(
                "{name:?} must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter) because Services are named after it"
            ),
        )];
    }
    let names = DerivedNames::for_cluster(name);
    let max = (MAX_DNS_LABEL - (names.headless.len() - name.len()))
        .min(MAX_STATEFULSET_NAME - (names.redis.len() - name.len()));
    if name.len() > max {
        return vec![ValidationError::new(
            field,
            format!(
                "{name:?} is {} characters; at most {max} fit the derived object names ({:?}, {:?})",
                name.len(),
                names.headless,
                names.redis
            ),
        )];
    }
    Vec::new()
}

/// A replicated managed Redis adds the Sentinels' StatefulSet, whose name is longer.
fn replicated_redis_name_errors(name: &str, spec: &PushClusterSpec) -> Vec<ValidationError> {
    let replicated = spec.redis.managed.as_ref().is_some_and(|m| m.replicas > 1);
    let names = DerivedNames::for_cluster(name);
    let max = MAX_STATEFULSET_NAME - (names.redis_sentinel.len() - name.len());
    if replicated && name.len() > max {
        return vec![ValidationError::new(
            "metadata.name",
            format!(
                "{name:?} is {} characters; with spec.redis.managed.replicas above 1 at most {max} fit the Sentinels' StatefulSet name ({:?})",
                name.len(),
                names.redis_sentinel
            ),
        )];
    }
    Vec::new()
}

fn spec_errors(spec: &PushClusterSpec) -> Vec<ValidationError> {
    // Reserved env names, Traefik + ipHash and Gateway + TLS are CEL rules of the CRD
    // (see `cel_errors`): the API server and this step judge them with the same rule.
    let mut errors = exposure_errors(&spec.exposure);
    errors.extend(disruption_errors(&spec.disruption));
    errors
}

/// What the CEL rule cannot tell (it sees `5` and `"5"` alike): a string must be a
/// percentage, which is all a PodDisruptionBudget accepts as a string.
fn disruption_errors(disruption: &DisruptionSpec) -> Vec<ValidationError> {
    match &disruption.max_unavailable {
        IntOrString::String(s) if !s.ends_with('%') => vec![ValidationError::new(
            "spec.disruption.maxUnavailable",
            format!(
                "{s:?} is a string: write a number of pods without quotes, or a percentage such as \"25%\""
            ),
        )],
        _ => Vec::new(),
    }
}

fn exposure_errors(exposure: &ExposureSpec) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    if let Some(ingress) = &exposure.ingress
        && ingress.class_name.is_empty()
    {
        errors.push(ValidationError::new(
            "spec.exposure.ingress.className",
            "must name an IngressClass",
        ));
    }
    if let Some(host) = &exposure.host
        && (host.is_empty() || host.contains(['/', ':', ' ']))
    {
        errors.push(ValidationError::new(
            "spec.exposure.host",
            format!("{host:?} must be a bare host name (no scheme, port or path)"),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> PushCluster {
        serde_yaml_ng::from_str(yaml).expect("test yaml parses")
    }

    const BASE: &str = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: chat, namespace: ns}\n";

    #[test]
    fn accepts_or_rejects_each_case_naming_the_field() {
        // (case, spec yaml, expected failing field or None)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("defaults", "spec: {}", None),
            (
                "a count of pods as a string",
                "spec: {disruption: {maxUnavailable: '2'}}",
                Some("spec.disruption.maxUnavailable"),
            ),
            (
                "a percentage of pods",
                "spec: {disruption: {maxUnavailable: '25%'}}",
                None,
            ),
            (
                "a count of pods",
                "spec: {disruption: {maxUnavailable: 2}}",
                None,
            ),
            (
                "both redis modes",
                "spec: {redis: {managed: {}, external: {url: 'redis://r:6379'}}}",
                Some("spec.redis"),
            ),
            (
                "two exposure modes",
                "spec: {exposure: {host: a.b, service: {}, ingress: {className: nginx}}}",
                Some("spec.exposure"),
            ),
            (
                "ingress without host",
                "spec: {exposure: {ingress: {className: nginx}}}",
                Some("spec.exposure"),
            ),
            (
                "min above max",
                "spec: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}}",
                Some("spec.autoscaling"),
            ),
            (
                "replicas outside autoscaling bounds",
                "spec: {replicas: 20, autoscaling: {enabled: true, minReplicas: 1, maxReplicas: 5}}",
                Some("spec.replicas"),
            ),
            (
                "replicas outside bounds but autoscaling off",
                "spec: {replicas: 20, autoscaling: {enabled: false, minReplicas: 1, maxReplicas: 5}}",
                None,
            ),
            (
                "jwt with both keys",
                "spec: {auth: {jwt: {secretRef: {name: a, key: b}, publicKeySecretRef: {name: a, key: c}}}}",
                Some("spec.auth.jwt"),
            ),
            (
                "traefik ip hash",
                "spec: {exposure: {host: a.b, ingress: {className: traefik, controller: traefik, affinity: ipHash}}}",
                Some("spec.exposure.ingress.affinity"),
            ),
            (
                "empty ingress class",
                "spec: {exposure: {host: a.b, ingress: {className: ''}}}",
                Some("spec.exposure.ingress.className"),
            ),
            (
                "tls in gateway mode",
                "spec: {exposure: {host: a.b, tls: {secretName: t}, gateway: {parentRef: {name: g}}}}",
                Some("spec.exposure.tls"),
            ),
            (
                "host with scheme",
                "spec: {exposure: {host: 'https://a.b', ingress: {className: nginx}}}",
                Some("spec.exposure.host"),
            ),
            (
                "env collides with operator",
                "spec: {env: [{name: PUSH_REDIS_URL, value: x}]}",
                Some("spec.env"),
            ),
            (
                "env names the sentinels",
                "spec: {env: [{name: PUSH_REDIS_SENTINELS, value: 'r:26379'}]}",
                Some("spec.env"),
            ),
            (
                "env skips the replica acknowledgement",
                "spec: {env: [{name: PUSH_REDIS_MIN_REPLICAS, value: '0'}]}",
                Some("spec.env"),
            ),
            (
                "three redis servers",
                "spec: {redis: {managed: {replicas: 3}}}",
                None,
            ),
            (
                "env overrides the history spec",
                "spec: {env: [{name: PUSH_HISTORY_MAX_MESSAGES, value: '0'}]}",
                Some("spec.env"),
            ),
            (
                "env overrides the admission spec",
                "spec: {env: [{name: PUSH_HANDSHAKES_PER_SECOND, value: '0'}]}",
                Some("spec.env"),
            ),
            (
                "env overrides the delivery spec",
                "spec: {env: [{name: PUSH_FANOUT, value: interest}]}",
                Some("spec.env"),
            ),
            (
                "delivery by interest with a write window",
                "spec: {delivery: {fanout: interest, writeWindowMs: 1000}}",
                None,
            ),
        ];
        for (case, spec, want) in cases {
            let got = validate(&cluster(&format!("{BASE}{spec}")), "default");
            match (want, got) {
                (None, Ok(_)) => {}
                (None, Err(e)) => panic!("case {case:?}: unexpected errors {e:?}"),
                (Some(field), Ok(_)) => panic!("case {case:?}: accepted, want error on {field}"),
                (Some(field), Err(errs)) => assert!(
                    errs.iter().any(|e| e.field == *field),
                    "case {case:?}: want error on {field}, got {errs:?}"
                ),
            }
        }
    }

    #[test]
    fn cel_messages_reach_the_user() {
        let errs = validate(
            &cluster(&format!(
                "{BASE}spec: {{redis: {{managed: {{}}, external: {{url: 'redis://r'}}}}}}"
            )),
            "default",
        )
        .expect_err("two redis modes rejected");
        assert!(
            describe(&errs).contains("set exactly one of managed or external"),
            "{errs:?}"
        );
    }

    #[test]
    fn each_cel_rule_rejects_with_its_message() {
        // (rule, spec violating only that rule, message the user sees)
        let cases: &[(&str, &str, &str)] = &[
            (
                "one redis mode",
                "spec: {redis: {managed: {}, external: {url: 'redis://r'}}}",
                "set exactly one of managed or external",
            ),
            (
                "no redis mode",
                "spec: {redis: {}}",
                "set exactly one of managed or external",
            ),
            (
                "one external form",
                "spec: {redis: {external: {url: 'redis://r', sentinel: {addresses: ['s:26379'], masterName: m}}}}",
                "set exactly one of url, sentinel or cluster",
            ),
            (
                "sentinel and cluster",
                "spec: {redis: {external: {cluster: {addresses: ['c:7000']}, sentinel: {addresses: ['s:26379'], masterName: m}}}}",
                "set exactly one of url, sentinel or cluster",
            ),
            (
                "tls with a plain url",
                "spec: {redis: {external: {url: 'redis://r', tls: {}}}}",
                "spec.redis.external.tls needs a rediss:// url",
            ),
            (
                "no external form",
                "spec: {redis: {external: {}}}",
                "set exactly one of url, sentinel or cluster",
            ),
            (
                "one exposure mode",
                "spec: {exposure: {}}",
                "set exactly one of gateway, ingress or service",
            ),
            (
                "tls needs host",
                "spec: {exposure: {tls: {secretName: t}, service: {}}}",
                "spec.exposure.tls needs spec.exposure.host",
            ),
            (
                "host for gateway",
                "spec: {exposure: {gateway: {parentRef: {name: g}}}}",
                "spec.exposure.host is required",
            ),
            (
                "min <= max",
                "spec: {autoscaling: {minReplicas: 4, maxReplicas: 3}}",
                "minReplicas must not exceed maxReplicas",
            ),
            (
                "replicas in bounds",
                "spec: {replicas: 1, autoscaling: {enabled: true, minReplicas: 2, maxReplicas: 3}}",
                "spec.replicas must lie within",
            ),
            (
                "one jwt key",
                "spec: {auth: {jwt: {}}}",
                "set exactly one of secretRef (HS256) or publicKeySecretRef",
            ),
        ];
        for (rule, spec, message) in cases {
            let errs = validate(&cluster(&format!("{BASE}{spec}")), "default").expect_err(rule);
            let text = describe(&errs);
            assert!(
                text.contains(message),
                "rule {rule:?}: want {message:?} in {text:?}"
            );
        }
    }

    #[test]
    fn names_are_checked_for_derived_objects() {
        let cases: &[(&str, &str, bool)] = &[
            ("short", "chat", true),
            ("upper case", "Chat", false),
            ("starts with digit", "1chat", false),
            ("trailing dash", "chat-", false),
            ("longest that fits", &"a".repeat(46), true),
            (
                "one too long for the redis statefulset",
                &"a".repeat(47),
                false,
            ),
        ];
        for (case, name, ok) in cases {
            assert_eq!(name_errors(name).is_empty(), *ok, "case {case:?}");
        }
    }

    #[test]
    fn a_replicated_redis_needs_room_for_the_sentinels_statefulset_name() {
        let spec =
            |yaml: &str| -> PushClusterSpec { serde_yaml_ng::from_str(yaml).expect("spec parses") };
        let replicated = spec("{redis: {managed: {replicas: 3}}}");
        let single = spec("{}");
        // 52 - len("-redis-sentinel") = 37.
        assert!(replicated_redis_name_errors(&"a".repeat(37), &replicated).is_empty());
        let errors = replicated_redis_name_errors(&"a".repeat(38), &replicated);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("at most 37"),
            "{}",
            errors[0]
        );
        assert!(replicated_redis_name_errors(&"a".repeat(46), &single).is_empty());
    }

    #[test]
    fn namespace_defaults_and_owner_reference_needs_uid() {
        let yaml = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: chat}\nspec: {}";
        let vc = validate(&cluster(yaml), "team").expect("valid");
        assert_eq!(vc.namespace, "team");
        assert!(vc.owner_reference.is_none());
        let with_uid = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: chat, uid: u1}\nspec: {}";
        let owner = validate(&cluster(with_uid), "team")
            .expect("valid")
            .owner_reference
            .expect("owner ref with uid");
        assert_eq!(owner.uid, "u1");
        assert_eq!(owner.controller, Some(true));
    }
}
