"""Fixtures shared by the end-to-end suites (helpers in e2e/harness, see its docstring), and
each test's tier marker."""

import base64
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
import requests
import websocket

from harness import Processes, wait_until

E2E = Path(__file__).resolve().parent
# The testing tiers (ARCHITECTURE.md) as the markers pytest.ini registers: a folder's tier,
# or a file's where one folder holds two. `pytest -m local` runs tier 4 alone.
TIERS = {
    "harness": "unit",
    "structure": "unit",
    "manifests": "manifests",
    "chart": "manifests",
    "autoscale/test_examples.py": "manifests",
    "autoscale/test_local_autoscale.py": "local",
    "local": "local",
    "continuity": "local",
    "redis_ha": "local",
    "push_server": "local",
    "engineio": "local",
    "hostile": "local",
    "bench": "local",
    "cluster": "cluster",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if not item.path.is_relative_to(E2E):
            continue
        rel = item.path.relative_to(E2E)
        tier = TIERS.get(rel.as_posix()) or TIERS.get(rel.parts[0])
        if tier:
            item.add_marker(tier)


@pytest.fixture
def processes(tmp_path):
    """Start processes with `processes.start(...)`; every one is killed at teardown."""
    procs = Processes(tmp_path)
    yield procs
    procs.kill_all()


@pytest.fixture
def redis_server(processes):
    """A real redis-server on a free port, started."""
    from harness import RedisServer

    return RedisServer(processes).start()


@pytest.fixture
def py_clients():
    """py_clients() -> a new PyClient; all are disconnected at teardown."""
    from harness import PyClient

    made = []

    def make():
        made.append(PyClient())
        return made[-1]

    yield make
    for client in made:
        client.close()


class Page:
    """Runtime.evaluate over the Chrome DevTools Protocol."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=10, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, params: dict) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                return reply["result"]

    def eval(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def screenshot(self, path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))


@pytest.fixture
def chromium(processes, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/setup does it)")

    def open_page(url: str) -> Page:
        proc = processes.start([binary, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", "--no-first-run", "--window-size=1280,900",
                                # Loopback only: a page naming another host gets "not found".
                                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={tmp_path / 'profile'}",
                                "--remote-debugging-port=0", url], name="chromium")
        port = wait_until(lambda: (m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                                                  proc.log_path.read_text())) and m.group(1),
                          30, "chromium DevTools endpoint")
        targets = wait_until(lambda: [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                                      if t["type"] == "page" and t["url"].startswith(url.split("?")[0])],
                             15, "the page target")
        return Page(targets[0]["webSocketDebuggerUrl"])

    return open_page
