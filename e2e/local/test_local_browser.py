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
