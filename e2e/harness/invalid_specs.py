"""The invalid-spec corpus: PushCluster specs that must be refused, each with the field the
refusal has to name. `push-operator render` (e2e/manifests/test_render.py) and the real API
server (e2e/cluster/test_api_server.py) judge the same list and must agree."""

HEAD = "apiVersion: pushcluster.dev/v1alpha1\nkind: PushCluster\nmetadata: {name: bad}\n"

# (id, spec as inline YAML, field the error names)
INVALID_SPECS = [
    ("two-redis-modes", "spec: {redis: {managed: {}, external: {url: 'redis://r'}}}", "spec.redis"),
    ("ingress-without-host", "spec: {exposure: {ingress: {className: nginx}}}", "spec.exposure.host"),
    ("min-above-max", "spec: {replicas: 1, autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 2}}",
     "spec.autoscaling.minReplicas"),
    ("traefik-ip-hash", "spec: {exposure: {host: a.b, ingress: {className: t, controller: traefik, affinity: ipHash}}}",
     "spec.exposure.ingress.affinity"),
    ("wrong-type", "spec: {replicas: lots}", "spec.replicas"),
    ("rebalance-in-no-time", "spec: {autoscaling: {rebalance: {windowSeconds: 0}}}",
     "spec.autoscaling.rebalance.windowSeconds"),
    ("empty-image", "spec: {image: ''}", "spec.image"),
    ("reserved-env", "spec: {env: [{name: PUSH_API_TOKEN, value: x}]}", "spec.env"),
    ("misspelt-field", "spec: {replica: 3}", "spec.replica"),
    ("above-maximum", "spec: {replicas: 5000}", "spec.replicas"),
    ("negative-replicas", "spec: {replicas: -1}", "spec.replicas"),
    ("negative-drain", "spec: {drainSeconds: -5}", "spec.drainSeconds"),
    ("history-of-no-messages", "spec: {history: {maxMessages: 0}}", "spec.history.maxMessages"),
    ("history-of-no-time", "spec: {history: {ttlSeconds: 0}}", "spec.history.ttlSeconds"),
    ("history-longer-than-a-day", "spec: {history: {ttlSeconds: 86401}}", "spec.history.ttlSeconds"),
    ("negative-connection-cap", "spec: {admission: {maxConnectionsPerPod: -1}}",
     "spec.admission.maxConnectionsPerPod"),
    ("negative-per-user-cap", "spec: {admission: {maxConnectionsPerUser: -1}}",
     "spec.admission.maxConnectionsPerUser"),
    ("env-overrides-per-user-cap", "spec: {env: [{name: PUSH_MAX_CONNECTIONS_PER_USER, value: '10'}]}", "spec.env"),
    ("negative-handshake-rate", "spec: {admission: {handshakesPerSecond: -1}}", "spec.admission.handshakesPerSecond"),
    ("no-header-timeout", "spec: {admission: {headerTimeoutSeconds: 0}}", "spec.admission.headerTimeoutSeconds"),
    ("header-timeout-above-five-minutes", "spec: {admission: {headerTimeoutSeconds: 301}}",
     "spec.admission.headerTimeoutSeconds"),
    ("env-overrides-admission", "spec: {env: [{name: PUSH_MAX_CONNECTIONS, value: '10'}]}", "spec.env"),
    ("gateway-with-tls", "spec: {exposure: {host: a.b, tls: {secretName: t}, gateway: {parentRef: {name: g}}}}",
     "spec.exposure.tls"),
    ("empty-ingress-class", "spec: {exposure: {host: a.b, ingress: {className: ''}}}", "spec.exposure.ingress.className"),
    ("host-with-scheme", "spec: {exposure: {host: 'https://a.b', ingress: {className: nginx}}}", "spec.exposure.host"),
    ("misspelt-nested-field", "spec: {redis: {managed: {imag: redis}}}", "spec.redis.managed.imag"),
    ("no-redis-server", "spec: {redis: {managed: {replicas: 0}}}", "spec.redis.managed.replicas"),
    ("more-than-seven-redis-servers", "spec: {redis: {managed: {replicas: 8}}}", "spec.redis.managed.replicas"),
    ("env-names-sentinels", "spec: {env: [{name: PUSH_REDIS_SENTINELS, value: 'r:26379'}]}", "spec.env"),
    ("redis-url-not-redis", "spec: {redis: {external: {url: 'http://r:6380'}}}", "spec.redis.external.url"),
    ("tls-with-a-plain-url", "spec: {redis: {external: {url: 'redis://r:6379', tls: {}}}}", "spec.redis.external"),
    ("external-url-and-sentinel",
     "spec: {redis: {external: {url: 'redis://r', sentinel: {addresses: ['s:26379'], masterName: m}}}}",
     "spec.redis.external"),
    ("sentinel-address-without-port",
     "spec: {redis: {external: {sentinel: {addresses: ['s'], masterName: m}}}}",
     "spec.redis.external.sentinel.addresses[0]"),
    ("external-sentinel-and-cluster",
     "spec: {redis: {external: {cluster: {addresses: ['c:7000']}, sentinel: {addresses: ['s:26379'], masterName: m}}}}",
     "spec.redis.external"),
    ("cluster-seed-without-port", "spec: {redis: {external: {cluster: {addresses: ['c:7000', 'c']}}}}",
     "spec.redis.external.cluster.addresses[1]"),
    ("cluster-without-seeds", "spec: {redis: {external: {cluster: {addresses: []}}}}",
     "spec.redis.external.cluster.addresses"),
    ("negative-max-unavailable", "spec: {disruption: {maxUnavailable: -1}}", "spec.disruption"),
    ("max-unavailable-not-a-percentage", "spec: {disruption: {maxUnavailable: 'half'}}", "spec.disruption"),
    ("max-unavailable-over-100-percent", "spec: {disruption: {maxUnavailable: '101%'}}", "spec.disruption"),
    ("env-names-the-cluster", "spec: {env: [{name: PUSH_REDIS_CLUSTER, value: 'c:7000'}]}", "spec.env"),
]


def manifest(spec: str, name: str = "bad") -> str:
    return HEAD.replace("{name: bad}", f"{{name: {name}}}") + spec
