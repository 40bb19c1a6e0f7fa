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



def test_demo_page_chats_sees_who_is_there_refreshes_its_token_and_shows_a_kick(processes, redis_server, start_node,
                                                                                 chromium):
    """The demo page as a small chat (#28), on one of two nodes: it sends to the room
    (its token's `publish` claim), asks who is there (both nodes' members), moves to a
    fresh token without reconnecting, and shows a kick by the disconnect API without
    reconnecting by itself."""
    import time

    import jwt

    from harness import NodeClients

    secret = "e2e-jwt-secret-with-enough-bytes-32"

    def token(sub: str, ttl: int, **claims) -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, **claims}, secret, algorithm="HS256")

    a, b = (start_node(redis_server.url, node_id=n, JWT_SECRET=secret, DEMO_PAGE="true",
                       HISTORY_MAX_MESSAGES=100) for n in "ab")
    bob = NodeClients(processes, {"url": b.url, "transports": ["websocket"], "auth": {"token": token("bob", 300)},
                                  "rooms": ["lobby"]}, name="bob")
    bob.wait_ready()
    page = chromium(a.url + "/?room=lobby&token=" + token("ann", 60, publish=["lobby"]))
    text = lambda element: page.eval(f"document.getElementById('{element}').textContent") or ""  # noqa: E731
    wait_until(lambda: "lobby" in text("rooms"), 20, "the page in the lobby")

    page.eval("document.getElementById('who').click()")
    assert wait_until(lambda: text("presence"), 10, "who is here") == "2 connected in lobby: ann, bob"

    page.eval("document.getElementById('say').value = 'hello from the page'; document.getElementById('send').click()")
    assert wait_until(lambda: text("chat-status"), 10, "the send's ack") == "sent to lobby"
    assert [e["data"] for e in bob.settle("chat", 1)] == [{"text": "hello from the page"}]
    assert "hello from the page" in text("messages"), "the sender is a member too"

    fresh = token("ann", 600, publish=["lobby"])
    page.eval(f"document.getElementById('token').value = '{fresh}'; document.getElementById('refresh').click()")
    assert wait_until(lambda: text("token-status"), 10, "the refresh's ack").startswith("token valid until")
    assert a.connections() == 1

    kicked = requests.post(a.admin_url + contract()["paths"]["DISCONNECT"], timeout=10,
                           json={"user": "ann", "reason": "bye for now"},
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert kicked.status_code == 202, kicked.text
    wait_until(lambda: text("kick") == "Disconnected by the server: bye for now", 10, "the kick shown")
    assert text("state") == "disconnected: io server disconnect"
    time.sleep(1)  # a window in which a reconnect would show (not a readiness wait)
    assert page.eval("socket.connected") is False and a.connections() == 0
