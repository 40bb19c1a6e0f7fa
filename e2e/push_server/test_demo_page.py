"""The demo page in real headless Chromium: it loads the official client bundle from
the node (no CDN), connects, subscribes and shows a published message."""

import itertools
import json
import re
import shutil

import pytest
import requests
import websocket

from harness import contract, wait_until
from harness.push_suite import API_TOKEN


class Page:
    """Runtime.evaluate over the Chrome DevTools Protocol."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=10, suppress_origin=True)
        self.ids = itertools.count(1)

    def eval(self, expression: str):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                return reply["result"]["result"].get("value")


@pytest.fixture
def chromium(processes, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/setup does it)")

    def open_page(url: str) -> Page:
        proc = processes.start([binary, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                                "--remote-debugging-port=0", url], name="chromium")
        port = wait_until(lambda: (m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                                                  proc.log_path.read_text())) and m.group(1),
                          30, "chromium DevTools endpoint")
        targets = wait_until(lambda: [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                                      if t["type"] == "page" and t["url"].startswith(url.split("?")[0])],
                             15, "the page target")
        return Page(targets[0]["webSocketDebuggerUrl"])

    return open_page


def test_demo_page_connects_subscribes_and_shows_messages(start_node, chromium):
    node = start_node(DEMO_PAGE="true")
    page = chromium(node.url + "/?room=lobby")
    wait_until(lambda: page.eval("document.getElementById('state').textContent") == "connected", 20,
               "the page to connect")
    assert page.eval("typeof io") == "function", "the official client bundle did not load"
    assert page.eval("document.querySelector('script[src]').getAttribute('src')").startswith("/")
    wait_until(lambda: "lobby" in (page.eval("document.getElementById('rooms').textContent") or ""), 10,
               "the subscribe ack")
    assert node.publish({"event": "news", "data": {"headline": "hello browser"}, "room": "lobby"},
                        API_TOKEN).status_code == 202
    text = wait_until(lambda: page.eval("document.getElementById('messages').textContent"), 10, "a message")
    assert "hello browser" in text and text.startswith("news:"), text
    assert node.connections() == 1


def test_the_client_port_serves_neither_the_page_nor_the_publish_api_by_default(start_node):
    """What a route exposing the client port reaches: socket.io only. The publish API is on
    the server port (with the right token: 202), the page only with DEMO_PAGE."""
    node = start_node()
    body = {"event": "news", "data": 1, "room": "lobby"}
    exposed = requests.post(node.url + contract()["paths"]["PUBLISH"], json=body,
                            headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert exposed.status_code == 404, exposed.text
    assert requests.get(node.url + "/", timeout=5).status_code == 404
    assert requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling", timeout=5).status_code == 200
    assert node.publish(body, API_TOKEN).status_code == 202

