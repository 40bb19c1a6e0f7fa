"""The demo page in real headless Chromium: it loads the official client bundle from
the node (no CDN), connects, subscribes and shows a published message."""

import requests

from harness import contract, wait_until
from harness.push_suite import API_TOKEN


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

