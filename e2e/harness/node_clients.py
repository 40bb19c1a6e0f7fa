"""The official socket.io JS client (e2e/clients/client.js) as JSON-line streams: the one
wrapper of that driver, for every suite."""

import json
import shutil
import subprocess
import threading
import time

import pytest

from .core import REPO, wait_until
from .procs import Processes

CLIENTS = REPO / "e2e" / "clients"
NODE_MODULES = REPO / "e2e" / "node_modules"


def _require_node() -> None:
    if shutil.which("node") is None:
        pytest.skip("node not installed")
    if not (NODE_MODULES / "socket.io-client").is_dir():
        pytest.skip("e2e/node_modules missing: run `npm ci` in e2e (.ci/setup does it)")


class NodeClients:
    """`count` official clients in one node process; `lines` holds what they reported.

    The spec is client.js's (its header lists the keys). Also a context manager that
    closes the clients on exit; `processes` kills them at teardown in any case."""

    def __init__(self, procs: Processes, spec: dict, name: str = "js-client"):
        _require_node()
        self.spec = spec
        self.lines: list[dict] = []
        self._lock = threading.Lock()
        self.proc = procs.start(["node", CLIENTS / "client.js", json.dumps(spec)], name=name,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO / "e2e")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        # The lines also go to the process's log (next to its stderr), for a post-mortem.
        with open(self.proc.log_path, "a", buffering=1) as log:
            for line in self.proc.stdout:
                log.write(line)
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                with self._lock:
                    self.lines.append(item)

    def of(self, type_: str, **match) -> list[dict]:
        with self._lock:
            return [l for l in self.lines
                    if l.get("type") == type_ and all(l.get(k) == v for k, v in match.items())]

    def wait(self, type_: str, n: int = 1, timeout: float = 10, **match) -> list[dict]:
        return wait_until(lambda: len(self.of(type_, **match)) >= n and self.of(type_, **match),
                          timeout, f"{n} {type_!r} line(s) {match or ''} from {self.spec.get('url')}")

    def wait_ready(self, timeout: float = 30) -> None:
        """Every client connected at least once (and subscribed, when rooms were given)."""
        count = self.spec.get("count", 1)
        try:
            wait_until(lambda: self.of("ready"), timeout, f"{count} clients connected to {self.spec.get('url')}")
        except AssertionError as e:
            raise AssertionError(f"{e}; connect errors: {self.of('connect_error')[:3]}") from None
        if self.spec.get("rooms"):
            self.wait("subscribed", count, timeout)

    def send(self, command: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def events(self, event: str, i: int | None = None) -> list[dict]:
        match = {"event": event} if i is None else {"event": event, "i": i}
        return self.of("event", **match)

    def received(self, event: str) -> dict[int, list]:
        """Client index → data of every `event` it received, in order."""
        got: dict[int, list] = {i: [] for i in range(self.spec.get("count", 1))}
        for line in self.events(event):
            got[line["i"]].append(line["data"])
        return got

    def settle(self, event: str, expected_total: int, timeout: float = 10, quiet: float = 0.3) -> list[dict]:
        """Waits for `expected_total` events, then `quiet` more seconds so duplicates would show."""
        wait_until(lambda: len(self.events(event)) >= expected_total, timeout,
                   f"{expected_total} {event!r} events")
        time.sleep(quiet)  # not readiness: a window in which a duplicate would be caught
        return self.events(event)

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                Processes.signal(self.proc, 9)

    def __enter__(self) -> "NodeClients":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_node_json(script: str, spec: dict, timeout: float = 20) -> dict:
    """Runs e2e/clients/<script> with the JSON spec; returns its JSON output line."""
    _require_node()
    result = subprocess.run(["node", CLIENTS / script, json.dumps(spec)], capture_output=True,
                            text=True, timeout=timeout, cwd=REPO / "e2e")
    assert result.returncode == 0, f"{script} failed: {result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])
