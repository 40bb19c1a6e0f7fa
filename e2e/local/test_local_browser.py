"""Scenario 6: a real browser. Headless Chromium opens the demo page through nginx and
shows a message published through the API; the screenshot is kept as an artifact
(e2e/artifacts/local-demo-page.png)."""

from __future__ import annotations

import json
import subprocess

from harness import REPO, wait_until
from harness.local import ARTIFACTS, LocalCluster, manifest

BROWSER = REPO / "e2e" / "clients" / "browser.js"


def test_demo_page_shows_a_published_message(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "local-demo-page.png"
    shot.unlink(missing_ok=True)
    text = "hello from the publish API"
    with LocalCluster(tmp_path, manifest("browser", 3, 4, "address")) as cluster:
        spec = {"url": f"{cluster.endpoint}/", "expect": text, "screenshot": str(shot)}
        browser = subprocess.Popen(["node", str(BROWSER), json.dumps(spec)],
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert browser.stdout
            first = json.loads(browser.stdout.readline() or '{"type": "eof"}')
            assert first["type"] == "connected", first
            # The page is connected: publish until it shows the message (the broadcast
            # cannot be lost, but the page may still be upgrading its transport).
            wait_until(lambda: cluster.publish({"event": "news", "data": text, "broadcast": True}).status_code == 202, 5, "publish accepted")
            out, _ = browser.communicate(timeout=40)
            result = json.loads(out.strip().splitlines()[-1])
            assert result["type"] == "seen", result
            assert text in result["text"]
            assert browser.returncode == 0
        finally:
            if browser.poll() is None:
                browser.kill()
                browser.wait()
    assert shot.stat().st_size > 10_000, "screenshot missing or empty"


def test_demo_page_recovers_what_it_missed_when_its_node_dies(tmp_path):
    """The demo page's node is SIGKILLed and a message is published while the page is
    away: the page reconnects to another node, says every missed message was delivered
    (`socket.recovered`), and shows the message."""
    import os
    import signal

    import requests

    from harness.local import CONTRACT, READY

    shot = tmp_path / "recovered.png"
    with LocalCluster(tmp_path, manifest("browser", 3, 4, "address")) as cluster:
        spec = {"url": f"{cluster.endpoint}/?room=lobby", "expect": "before", "screenshot": str(shot),
                "then": {"expect": "while away", "continuity": "recovered"}}
        browser = subprocess.Popen(["node", str(BROWSER), json.dumps(spec)],
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert browser.stdout
            assert json.loads(browser.stdout.readline() or '{"type": "eof"}')["type"] == "connected"
            wait_until(lambda: cluster.publish({"event": "news", "data": "before", "room": "lobby"}).status_code == 202,
                       5, "publish accepted")
            seen = json.loads(browser.stdout.readline() or '{"type": "eof"}')
            assert seen["type"] == "seen", seen
            nodes = cluster.nodes(READY)
            [page_node] = [n for n in nodes if cluster.connections(n) > 0]
            survivor = next(n for n in nodes if n["name"] != page_node["name"])
            os.kill(page_node["pid"], signal.SIGKILL)
            # Straight to a surviving node's server port: nginx may not have noticed yet
            # that the node just killed is gone.
            away = requests.post(f"http://{survivor['admin']}{CONTRACT['paths']['PUBLISH']}", timeout=10,
                                 json={"event": "news", "data": "while away", "room": "lobby"},
                                 headers={"Authorization": f"Bearer {cluster.token}"})
            assert away.status_code == 202, away.text
            out, _ = browser.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            assert result["type"] == "continuity", result
            assert "every missed message was delivered" in result["text"]
            assert "while away" in result["seen"]
        finally:
            if browser.poll() is None:
                browser.kill()
                browser.wait()
