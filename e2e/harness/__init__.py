"""The test kit of the end-to-end suites (found through pytest.ini's `pythonpath = e2e`).

- `REPO`, `contract()`: names from e2e/contract.json (rendered from the Rust contract
  crate; never copy strings).
- `find_binary(name, env_var=None)`: $ENV_VAR (default: the name in capitals, `-` as `_`, then `_BIN`: PUSH_SERVER_BIN), else $CARGO_TARGET_DIR/debug/<name>, else
  <repo>/target/debug/<name>; `require_binary` skips the test with a clear message.
- `reserve_port()`: a port below the ephemeral range, claimed (harness/ports.py says why);
  `wait_until(predicate, timeout, what, process=p)`: readiness by polling, failing at once
  with the exit code and log tail when `p` dies.
- `Processes`: starts processes in their own process group, kills every group at exit.
- `RedisServer`: a real redis-server on a free port (kill / restart on the same port).
- `PushServer`: a push-server process with env from the contract; metrics, publish,
  readiness, SIGTERM.
- `NodeClients`: e2e/clients/client.js (official socket.io client), JSON lines parsed; the one
  wrapper of that driver for every suite. `run_node_json(script, spec)` for one-shot
  scripts (e.g. clients/session.js).
- `PyClient`: python-socketio client recording events and the connect_error message.
- schemas: `kubernetes_schema_errors(obj, version)` (kubernetes-validate --strict),
  `validate_custom_resources(objects)` (e2e/schemas: HTTPRoute, ServiceMonitor, PodMonitor,
  ScaledObject against their CRDs), `manifest_schema_errors(objects, version)` (each object
  to the right one of the two), `operator_crd()` / `committed_crd()` → `crd_json_schema(crd)`
  → `crd_schema_errors(obj, schema)` (PushClusters against the operator's own CRD).

Fixtures wrapping them live in e2e/conftest.py. Suite modules, imported by name:
`harness.local` (local mode), `harness.chart`, `harness.cluster`, `harness.host_operator`,
`harness.invalid_specs`, `harness.push_suite`; README.md lists them.
"""

from .core import REPO, contract, find_binary, log_tail, missing_build, require_binary, wait_until
from .ports import reserve_port
from .procs import Processes
from .redis_server import RedisServer
from .push_server import PushServer, fanout_mode, parse_metrics
from .node_clients import NodeClients, run_node_json
from .py_client import PyClient
from .schemas import (
    committed_crd,
    crd_json_schema,
    crd_schema_errors,
    has_kubernetes_schema,
    kubernetes_schema_errors,
    manifest_schema_errors,
    openapi_to_jsonschema,
    operator_crd,
    validate_custom_resources,
)

__all__ = [
    "REPO",
    "contract",
    "find_binary",
    "log_tail",
    "missing_build",
    "reserve_port",
    "require_binary",
    "wait_until",
    "Processes",
    "RedisServer",
    "PushServer",
    "fanout_mode",
    "parse_metrics",
    "NodeClients",
    "run_node_json",
    "PyClient",
    "committed_crd",
    "crd_json_schema",
    "crd_schema_errors",
    "has_kubernetes_schema",
    "kubernetes_schema_errors",
    "manifest_schema_errors",
    "openapi_to_jsonschema",
    "operator_crd",
    "validate_custom_resources",
]
