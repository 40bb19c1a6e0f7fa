use super::*;
use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, SecretKeySelector};

fn exposure(yaml: &str) -> ExposureSpec {
    serde_yaml_ng::from_str(yaml).expect("test exposure parses")
}

#[test]
fn affinity_follows_the_exposure() {
    let cases: &[(&str, &str, Result<Affinity, PlanError>)] = &[
        (
            "service: client address",
            "service: {}",
            Ok(Affinity::ClientAddress),
        ),
        (
            "gateway: its cookie",
            "{host: a.example, gateway: {parentRef: {name: gw}, cookieName: sticky}}",
            Ok(Affinity::Cookie {
                name: "sticky".into(),
            }),
        ),
        (
            "ingress cookie",
            "{host: a.example, ingress: {className: nginx}}",
            Ok(Affinity::Cookie {
                name: "pushcluster-affinity".into(),
            }),
        ),
        (
            "ingress ipHash",
            "{host: a.example, ingress: {className: nginx, affinity: ipHash}}",
            Ok(Affinity::ClientAddress),
        ),
        (
            "cookie name that would break the nginx config",
            "{host: a.example, ingress: {className: nginx, cookieName: 'a;b'}}",
            Err(PlanError::BadCookieName("a;b".into())),
        ),
    ];
    for (name, yaml, want) in cases {
        assert_eq!(&affinity_for(&exposure(yaml)), want, "case {name}");
    }
}

fn slot() -> NodeSlot {
    NodeSlot {
        name: "chat-0".into(),
        client: "127.0.0.1:4000".parse().expect("addr"),
        admin: "127.0.0.1:4001".parse().expect("addr"),
    }
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn locate(name: &str, key: &str) -> (String, String) {
    (format!("ENV_{name}_{key}"), format!("dir/{name}/{key}"))
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// (case, sentinels, expected variables besides the common ones; None = must be absent)
type RedisEnvCase = (
    &'static str,
    Vec<SocketAddr>,
    Vec<(&'static str, Option<&'static str>)>,
);

#[test]
fn node_env_resolves_and_overrides() {
    let pod_name = EnvVar {
        name: env::NODE_ID.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    };
    let template = vec![
        plain(env::LISTEN, "0.0.0.0:3000"),
        plain(env::DRAIN_SECONDS, "5"),
        pod_name,
        plain(env::REDIS_URL, "redis://chat-redis:6379"),
        from_secret(env::REDIS_PASSWORD, "chat-redis", "password"),
        from_secret(env::API_TOKEN, "chat-api-token", "token"),
    ];
    let secrets: SecretValues = [(("chat-api-token".into(), "token".into()), "t0k".into())].into();
    let common = [
        (env::LISTEN, "127.0.0.1:4000"),
        (env::ADMIN_LISTEN, "127.0.0.1:4001"),
        (env::NODE_ID, "chat-0"),
        (env::DRAIN_SECONDS, "5"),
        (env::REDIS_URL, "redis://127.0.0.1:7000"),
        (env::REDIS_PASSWORD, "pw"),
        (env::API_TOKEN, "t0k"),
    ];
    let sentinels = |ports: &[u16]| -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    };
    let cases: Vec<RedisEnvCase> = vec![
        (
            "one redis-server: what was always set, nothing about Sentinels",
            vec![],
            vec![
                (env::REDIS_SENTINELS, None),
                (env::REDIS_SENTINEL_MASTER, None),
                (env::REDIS_MIN_REPLICAS, None),
            ],
        ),
        (
            "replicas: the Sentinels, their master name, one replica per publish",
            sentinels(&[7101, 7102, 7103]),
            vec![
                (
                    env::REDIS_SENTINELS,
                    Some("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"),
                ),
                (
                    env::REDIS_SENTINEL_MASTER,
                    Some(push_contract::defaults::REDIS_SENTINEL_MASTER),
                ),
                (env::REDIS_MIN_REPLICAS, Some("1")),
            ],
        ),
    ];
    for (case, sentinels, want) in cases {
        let overrides = LocalOverrides {
            redis: Some(LocalRedis {
                url: "redis://127.0.0.1:7000".into(),
                password: "pw".into(),
                replicas: sentinels.len().max(1),
                sentinels,
            }),
            files: Vec::new(),
        };
        let got = node_env(&template, &slot(), &overrides, &secrets, &locate).expect("resolves");
        for (name, value) in common {
            assert_eq!(
                lookup(&got, name),
                Some(value),
                "case {case:?}, variable {name}"
            );
        }
        for (name, value) in &want {
            assert_eq!(lookup(&got, name), *value, "case {case:?}, variable {name}");
        }
        let present = want.iter().filter(|(_, v)| v.is_some()).count();
        assert_eq!(
            got.len(),
            common.len() + present,
            "case {case:?}: no variable twice, none else: {got:?}"
        );
    }
}

#[test]
fn rebind_moves_only_the_listeners() {
    let mut env = vec![
        (env::LISTEN.to_string(), "127.0.0.1:1".to_string()),
        (env::ADMIN_LISTEN.to_string(), "127.0.0.1:2".to_string()),
        (env::DRAIN_SECONDS.to_string(), "5".to_string()),
    ];
    rebind(&mut env, &slot());
    assert_eq!(lookup(&env, env::LISTEN), Some("127.0.0.1:4000"));
    assert_eq!(lookup(&env, env::ADMIN_LISTEN), Some("127.0.0.1:4001"));
    assert_eq!(lookup(&env, env::DRAIN_SECONDS), Some("5"));
}

#[test]
fn a_missing_secret_says_where_to_put_it() {
    let template = vec![from_secret(env::JWT_SECRET, "jwt", "key")];
    let err = node_env(
        &template,
        &slot(),
        &LocalOverrides::default(),
        &SecretValues::new(),
        &locate,
    )
    .expect_err("missing secret");
    assert_eq!(
        err.to_string(),
        "secret jwt/key (for PUSH_JWT_SECRET) not found: set env ENV_jwt_key or create the file dir/jwt/key"
    );
}

#[test]
fn fingerprint_ignores_ports_but_not_config() {
    let a = vec![
        (env::LISTEN.to_string(), "127.0.0.1:1".to_string()),
        (env::DRAIN_SECONDS.to_string(), "5".to_string()),
    ];
    let moved = vec![
        (env::LISTEN.to_string(), "127.0.0.1:2".to_string()),
        (env::DRAIN_SECONDS.to_string(), "5".to_string()),
    ];
    let changed = vec![
        (env::LISTEN.to_string(), "127.0.0.1:1".to_string()),
        (env::DRAIN_SECONDS.to_string(), "6".to_string()),
    ];
    assert_eq!(fingerprint("bin", &a), fingerprint("bin", &moved));
    assert_ne!(fingerprint("bin", &a), fingerprint("bin", &changed));
    assert_ne!(fingerprint("bin", &a), fingerprint("other-bin", &a));
}

fn node(ordinal: u64, fp: u64, ready: bool, draining: bool) -> NodeView {
    NodeView {
        name: format!("n{ordinal}"),
        ordinal,
        fingerprint: fp,
        ready,
        draining,
    }
}

/// (case name, nodes, desired replicas, preferred victims, expected step)
type StepCase = (&'static str, Vec<NodeView>, usize, Vec<String>, Step);

#[test]
fn next_step_moves_toward_the_manifest() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<StepCase> = vec![
        (
            "steady: nothing to do",
            vec![node(0, 1, true, false), node(1, 1, true, false)],
            2,
            vec![],
            Step::default(),
        ),
        (
            "scale out 2 -> 5",
            vec![node(0, 1, true, false), node(1, 1, true, false)],
            5,
            vec![],
            Step {
                start: 3,
                drain: vec![],
            },
        ),
        (
            "scale in drains the newest",
            vec![
                node(0, 1, true, false),
                node(1, 1, true, false),
                node(2, 1, true, false),
            ],
            1,
            vec![],
            Step {
                start: 0,
                drain: names(&["n2", "n1"]),
            },
        ),
        (
            "scale in drains the preferred, then not-ready nodes",
            vec![
                node(0, 1, true, false),
                node(1, 1, false, false),
                node(2, 1, true, false),
            ],
            1,
            names(&["n0"]),
            Step {
                start: 0,
                drain: names(&["n0", "n1"]),
            },
        ),
        (
            "draining nodes do not count",
            vec![node(0, 1, true, false), node(1, 1, true, true)],
            2,
            vec![],
            Step {
                start: 1,
                drain: vec![],
            },
        ),
        (
            "config change: surge first",
            vec![node(0, 1, true, false), node(1, 1, true, false)],
            2,
            vec![],
            Step {
                start: 2,
                drain: vec![],
            },
        ),
        (
            "config change: old drain only once replacements are ready",
            vec![
                node(0, 1, true, false),
                node(1, 1, true, false),
                node(2, 2, true, false),
                node(3, 2, false, false),
            ],
            2,
            vec![],
            Step::default(),
        ),
        (
            "config change: replacements ready",
            vec![
                node(0, 1, true, false),
                node(1, 1, true, false),
                node(2, 2, true, false),
                node(3, 2, true, false),
            ],
            2,
            vec![],
            Step {
                start: 0,
                drain: names(&["n0", "n1"]),
            },
        ),
        (
            "scale to zero drains everything",
            vec![node(0, 1, true, false), node(1, 2, true, false)],
            0,
            vec![],
            Step {
                start: 0,
                drain: names(&["n0", "n1"]),
            },
        ),
    ];
    for (name, nodes, desired, prefer, want) in cases {
        // The manifest's configuration is fingerprint 1, or 2 once it changed.
        let target = if name.starts_with("config") || name.contains("zero") {
            2
        } else {
            1
        };
        assert_eq!(
            next_step(&nodes, desired, target, &prefer),
            want,
            "case {name}"
        );
    }
}
