"""Fixtures of the push-server suite: a cluster of push-server processes on one Redis."""

import base64
import itertools
import json
import re
import shutil

import pytest
import requests
import websocket

from harness import PushServer, wait_until
from harness.push_suite import API_TOKEN


@pytest.fixture
def start_node(processes):
    """start_node(redis_url=None, node_id="a", **env) -> a started PushServer."""

    def start(redis_url=None, node_id="a", ready=True, **env):
        env.setdefault("API_TOKEN", API_TOKEN)
        return PushServer(processes, redis_url=redis_url, env=env, node_id=node_id).start(ready=ready)

    return start


@pytest.fixture
def cluster(redis_server, start_node):
    """Two nodes linked by one real Redis."""
    return [start_node(redis_server.url, node_id=n) for n in ("a", "b")]


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
