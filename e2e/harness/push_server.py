"""A push-server process configured through the contract's env names."""

import json
import os
import re
import signal
import subprocess

import requests

from .core import contract, require_binary, wait_until
from .procs import Processes

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Samples of a Prometheus/OpenMetrics text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def fanout_override() -> str | None:
    """E2E_FANOUT (`log`: every node reads the whole log; `interest`), when a suite runs in
    a mode set explicitly; None: the product's default."""
    return os.environ.get("E2E_FANOUT") or None


def fanout_mode() -> str:
    """How the push servers a suite starts receive messages."""
    return fanout_override() or "interest"


class PushServer:
    def __init__(self, procs: Processes, redis_url: str | None = None, env: dict | None = None,
                 node_id: str = "node"):
        self.binary = require_binary("push-server", "PUSH_SERVER_BIN")
        self.procs = procs
        # Port 0: the server binds, then reports what it got in the address file.
        self.port = 0
        self.admin_port = 0
        self.node_id = node_id
        self.address_file = procs.log_dir / f"push-server-{node_id}-{id(self)}.addresses.json"
        names = contract()["env"]
        self.env = {
            names["LISTEN"]: "127.0.0.1:0",
            names["ADMIN_LISTEN"]: "127.0.0.1:0",
            names["ADDRESS_FILE"]: str(self.address_file),
            names["NODE_ID"]: node_id,
            names["LOG"]: "info,push_server=debug",
        }
        if redis_url:
            self.env[names["REDIS_URL"]] = redis_url
            # E2E_FANOUT=log runs a suite with every node reading the whole log.
            if fanout_override():
                self.env[names["FANOUT"]] = fanout_override()
        # Names from the contract: callers pass {"API_TOKEN": "..."}.
        for key, value in (env or {}).items():
            self.env[names.get(key, key)] = str(value)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, ready: bool = True) -> "PushServer":
        self.address_file.unlink(missing_ok=True)
        self.proc = self.procs.start([self.binary], name=f"push-server-{self.node_id}", env=self.env)
        addresses = wait_until(self._addresses, 15, f"push-server {self.node_id} to listen", process=self.proc)
        self.port = int(addresses["client"].rsplit(":", 1)[1])
        self.admin_port = int(addresses["admin"].rsplit(":", 1)[1])
        wait_until(lambda: self.get_admin("healthz").status_code == 200, 15,
                   f"push-server {self.node_id} /healthz", process=self.proc)
        if ready:
            wait_until(lambda: self.readyz() == 200, 15, f"push-server {self.node_id} ready", process=self.proc)
        return self

    def _addresses(self) -> dict | None:
        try:
            return json.loads(self.address_file.read_text())
        except FileNotFoundError:
            return None

    def log(self) -> str:
        return self.proc.log_path.read_text() if self.proc else ""

    def get_admin(self, path_key: str) -> requests.Response:
        return requests.get(self.admin_url + contract()["paths"][path_key.upper()], timeout=5)

    def readyz(self) -> int:
        try:
            return self.get_admin("readyz").status_code
        except requests.RequestException:
            return 0

    def metrics(self) -> list[tuple[str, dict, float]]:
        return parse_metrics(self.get_admin("metrics").text)

    def metric(self, key: str, **labels) -> float:
        """Sum of the samples of contract metric `key` (e.g. "MESSAGES_DELIVERED") matching labels."""
        name = contract()["metrics"][key]
        return sum(v for n, l, v in self.metrics()
                   if n == name and all(l.get(k) == v2 for k, v2 in labels.items()))

    def connections(self) -> float:
        return self.metric("CONNECTIONS")

    def publish(self, body, token: str | None, raw: bool = False, headers: dict | None = None):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        url = self.admin_url + contract()["paths"]["PUBLISH"]
        if raw:
            return requests.post(url, data=body, headers=hdrs, timeout=10)
        return requests.post(url, json=body, headers=hdrs, timeout=10)

    def sigterm(self) -> None:
        assert self.proc is not None
        Processes.signal(self.proc, signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)
