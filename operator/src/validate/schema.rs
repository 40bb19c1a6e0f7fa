//! The CRD's structural schema checked on the raw manifest, the way the API
//! server does before CEL: types, unknown fields (kubectl's default strict
//! field validation rejects them), required fields, ranges, lengths, enums.
//! serde alone would silently drop a misspelt field or accept `replicas: 5000`.

use super::ValidationError;
use kube::CustomResourceExt;
use serde_json::Value;

/// Fields of the object root the API server handles itself.
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Check a raw PushCluster manifest against the generated CRD's openAPIV3Schema.
pub fn schema_errors(manifest: &Value) -> Vec<ValidationError> {
    let crd = crate::resources::PushCluster::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok());
    let mut errors = Vec::new();
    if let Some(schema) = schema {
        check(&schema, manifest, "", &mut errors);
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<ValidationError>) {
    // The API server prunes nulls of non-nullable fields; nothing to check either way.
    if value.is_null() {
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(ValidationError::new(path, "must be an integer or a string"));
        }
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        errors.push(ValidationError::new(
            path,
            format!("must be of type {expected}, got {value}"),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(ValidationError::new(
            path,
            format!("{value} is not one of {}", Value::Array(allowed.clone())),
        ));
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_path = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => check(child_schema, child, &child_path, errors),
                    (None, Some(extra)) if extra.is_object() => {
                        check(extra, child, &child_path, errors)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if path.is_empty() && ROOT_FIELDS.contains(&key.as_str()) => {}
                    (None, _) if properties.is_some() => {
                        errors.push(ValidationError::new(child_path, "unknown field"));
                    }
                    (None, _) => {}
                }
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = required.as_str()
                    && !map.contains_key(name)
                {
                    errors.push(ValidationError::new(join(path, name), "is required"));
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                errors.push(ValidationError::new(
                    path.to_owned(),
                    format!("must have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                errors.push(ValidationError::new(
                    path.to_owned(),
                    format!("must have at most {max} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(s) => {
            // The API server's patterns are ECMA-262; those of this CRD are in the common
            // subset the regex crate reads the same way.
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(s))
            {
                errors.push(ValidationError::new(
                    path,
                    format!("must match the pattern {pattern}"),
                ));
            }
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errors.push(ValidationError::new(
                    path,
                    format!("must be at least {min} characters"),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errors.push(ValidationError::new(
                    path,
                    format!("must be at most {max} characters"),
                ));
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else { return };
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errors.push(ValidationError::new(
                    path,
                    format!("{n} is below the minimum {min}"),
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errors.push(ValidationError::new(
                    path,
                    format!("{n} is above the maximum {max}"),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_rejects_what_the_api_server_would() {
        // (case, spec yaml, field the error must name or None)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("valid", "{replicas: 3, redis: {managed: {}}}", None),
            (
                "k8s types inside",
                "{resources: {requests: {cpu: 100m, memory: 1Gi}}, env: [{name: A, value: b}]}",
                None,
            ),
            ("misspelt field", "{replica: 3}", Some("spec.replica")),
            (
                "unknown nested field",
                "{redis: {managed: {imag: x}}}",
                Some("spec.redis.managed.imag"),
            ),
            (
                "replicas above maximum",
                "{replicas: 5000}",
                Some("spec.replicas"),
            ),
            (
                "negative drain",
                "{drainSeconds: -1}",
                Some("spec.drainSeconds"),
            ),
            (
                "history at its bounds",
                "{history: {enabled: false, maxMessages: 100000, ttlSeconds: 86400}}",
                None,
            ),
            (
                "history of no messages",
                "{history: {maxMessages: 0}}",
                Some("spec.history.maxMessages"),
            ),
            (
                "history above maximum",
                "{history: {maxMessages: 100001}}",
                Some("spec.history.maxMessages"),
            ),
            (
                "history of no time",
                "{history: {ttlSeconds: 0}}",
                Some("spec.history.ttlSeconds"),
            ),
            (
                "history longer than a day",
                "{history: {ttlSeconds: 86401}}",
                Some("spec.history.ttlSeconds"),
            ),
            (
                "admission at its lower bounds",
                "{admission: {maxConnectionsPerPod: 0, handshakesPerSecond: 0, headerTimeoutSeconds: 1}}",
                None,
            ),
            (
                "admission at its upper bounds",
                "{admission: {maxConnectionsPerPod: 1000000, handshakesPerSecond: 1000000, headerTimeoutSeconds: 300}}",
                None,
            ),
            (
                "negative connection cap",
                "{admission: {maxConnectionsPerPod: -1}}",
                Some("spec.admission.maxConnectionsPerPod"),
            ),
            (
                "connection cap above maximum",
                "{admission: {maxConnectionsPerPod: 1000001}}",
                Some("spec.admission.maxConnectionsPerPod"),
            ),
            (
                "negative handshake rate",
                "{admission: {handshakesPerSecond: -1}}",
                Some("spec.admission.handshakesPerSecond"),
            ),
            (
                "no header timeout",
                "{admission: {headerTimeoutSeconds: 0}}",
                Some("spec.admission.headerTimeoutSeconds"),
            ),
            (
                "header timeout above five minutes",
                "{admission: {headerTimeoutSeconds: 301}}",
                Some("spec.admission.headerTimeoutSeconds"),
            ),
            ("wrong type", "{replicas: three}", Some("spec.replicas")),
            (
                "bad enum",
                "{imagePullPolicy: Sometimes}",
                Some("spec.imagePullPolicy"),
            ),
            ("empty image", "{image: ''}", Some("spec.image")),
            (
                "required inside",
                "{redis: {external: {sentinel: {addresses: ['s:26379']}}}}",
                Some("spec.redis.external.sentinel.masterName"),
            ),
            (
                "a sentinel address is host:port",
                "{redis: {external: {sentinel: {addresses: ['s'], masterName: m}}}}",
                Some("spec.redis.external.sentinel.addresses[0]"),
            ),
            (
                "a cluster seed is host:port",
                "{redis: {external: {cluster: {addresses: ['c:7000', 'c2']}}}}",
                Some("spec.redis.external.cluster.addresses[1]"),
            ),
            (
                "a cluster needs a seed",
                "{redis: {external: {cluster: {addresses: []}}}}",
                Some("spec.redis.external.cluster.addresses"),
            ),
            (
                "unknown env field",
                "{env: [{name: A, valeu: b}]}",
                Some("spec.env[0].valeu"),
            ),
            (
                "an unknown fan-out mode",
                "{delivery: {fanout: everywhere}}",
                Some("spec.delivery.fanout"),
            ),
            (
                "a write window past a second",
                "{delivery: {writeWindowMs: 1001}}",
                Some("spec.delivery.writeWindowMs"),
            ),
        ];
        for (case, spec, want) in cases {
            let yaml = format!(
                "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {{name: x, labels: {{a: b}}}}\nspec: {spec}"
            );
            let value: Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
            let errors = schema_errors(&value);
            match want {
                None => assert!(errors.is_empty(), "case {case:?}: {errors:?}"),
                Some(field) => assert!(
                    errors.iter().any(|e| e.field == *field),
                    "case {case:?}: want {field}, got {errors:?}"
                ),
            }
        }
    }
}
