"""The socket.io Admin UI (#28) against a 3-node cluster on one real Redis: the official
`@socket.io/admin-ui` web app (its prebuilt files from npm, served by the node at
/admin-ui/) in real headless Chromium lists every node and every node's sockets and
rooms; wrong credentials are refused; read-only unless configured, and then its
disconnect reaches a socket on another node. The official JS client checks the protocol
under the page."""

import json
import time

import jwt
import pytest
import requests

from harness import NodeClients, contract, wait_until
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"
PASSWORD = "e2e-admin-password"
ADMIN = contract()["socket"]["ADMIN_NAMESPACE"]
UI = contract()["paths"]["ADMIN_UI"]


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


@pytest.fixture
def nodes(redis_server, start_node):
    return [start_node(redis_server.url, node_id=n, JWT_SECRET=SECRET, ADMIN_UI_PASSWORD=PASSWORD)
            for n in "abc"]


@pytest.fixture
def clients(processes, nodes):
    """Two sockets per node: users <node>0 and <node>1, in `lobby` and `room-<node>`."""
    swarms = []
    for node in nodes:
        swarm = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "count": 2,
                                        "auths": [{"token": token(f"{node.node_id}{k}")} for k in range(2)],
                                        "rooms": ["lobby", f"room-{node.node_id}"]}, name=f"clients-{node.node_id}")
        swarms.append(swarm)
    for swarm in swarms:
        swarm.wait_ready()
    return swarms


def socket_ids(swarm: NodeClients) -> set[str]:
    return {line["id"] for line in swarm.of("connected")}


def admin(processes, node, password: str, name: str) -> NodeClients:
    return NodeClients(processes, {"url": node.url + ADMIN, "transports": ["websocket"],
                                   "auth": {"username": "admin", "password": password}}, name=name)


def test_the_admin_namespace_shows_every_node_and_refuses_wrong_credentials(processes, nodes, clients):
    wrong = admin(processes, nodes[0], "not-the-password", "admin-wrong")
    assert wrong.wait("connect_error")[0]["message"] == "invalid credentials"
    watcher = admin(processes, nodes[0], PASSWORD, "admin")
    watcher.wait("connected")
    config = watcher.wait("event", event="config")[0]["data"]
    assert config == {"supportedFeatures": []}, "read-only by default"
    stats = wait_until(lambda: {e["data"]["serverId"] for e in watcher.of("event", event="server_stats")} >= set("abc")
                       and watcher.of("event", event="server_stats"), 10, "every node's stats")
    assert {e["data"]["serverId"] for e in stats} == set("abc")
    snapshot = watcher.wait("event", event="all_sockets")[-1]["data"]
    want = set().union(*(socket_ids(s) for s in clients))
    assert {s["id"] for s in snapshot} == want and len(want) == 6
    for s in snapshot:
        assert {"lobby", f"room-{s['data']['user'][0]}"} <= set(s["rooms"]), s
        assert s["handshake"]["headers"] == {}, "no headers: tokens and cookies travel there"


def test_a_node_serves_at_most_its_cap_of_admin_sockets_even_when_they_arrive_at_once(processes, nodes):
    """MAX_ADMINS_PER_NODE + 4 admin sockets connecting to one node at the same moment:
    the cap holds exactly (the slot is taken atomically on connect, so admins passing the
    credential check together cannot all get in); the others are refused, by the
    middleware or, when they raced it, disconnected at once; a slot freed is taken again."""
    cap = contract()["socket"]["MAX_ADMINS_PER_NODE"]
    extra = 4
    crowd = NodeClients(processes, {"url": nodes[0].url + ADMIN, "transports": ["websocket"], "count": cap + extra,
                                    "auth": {"username": "admin", "password": PASSWORD}}, name="admin-crowd")

    def settled():
        connected = {line["i"] for line in crowd.of("connected")}
        ended = {line["i"] for line in crowd.of("disconnect")}
        refused = {line["i"] for line in crowd.of("connect_error")}
        return len(connected | refused) == cap + extra and (connected - ended, ended, refused)
    live, ended, refused = wait_until(settled, 20, "every admin socket connected or refused")
    assert len(live) == cap, f"{len(live)} admin sockets live at once (cap {cap}); refused {refused}, ended {ended}"
    for line in crowd.of("connect_error"):
        assert line["message"] == "too many admin connections on this node", line
    for line in crowd.of("disconnect"):
        assert line["reason"] == "io server disconnect", line
    gone = min(live)
    crowd.send({"cmd": "disconnect", "i": gone})
    newcomer = admin(processes, nodes[0], PASSWORD, "admin-newcomer")
    newcomer.wait("connected")
    newcomer.wait("event", event="config")


def test_the_admin_ui_in_chromium_lists_every_node_s_sockets_and_rooms(processes, nodes, clients, chromium,
                                                                       tmp_path):
    assert requests.get(nodes[1].url + UI, timeout=5).status_code == 200
    page = chromium(nodes[1].url + UI)
    wait_until(lambda: page.eval("!!document.querySelector('[data-app]')"), 20, "the Admin UI app")
    connect = """(() => {
        const root = document.querySelector('[data-app]').__vue__.$root;
        const find = (vm) => vm.tryConnect ? vm : vm.$children.map(find).find(Boolean);
        window.adminApp = find(root);
        window.adminApp.tryConnect(%s, %s, {username: "admin", password: %s}, true, "/socket.io", "default");
        return true;
    })()"""
    page.eval(connect % (json.dumps(nodes[1].url), json.dumps(ADMIN), json.dumps("wrong-password")))
    error = wait_until(lambda: page.eval("window.adminApp.connectionError"), 10, "the refusal shown")
    assert "invalid credentials" in error, error
    assert page.eval("window.adminApp.$store.state.connection.connected") is False
    page.eval(connect % (json.dumps(nodes[1].url), json.dumps(ADMIN), json.dumps(PASSWORD)))
    servers = wait_until(lambda: len(page.eval(
        "window.adminApp.$store.state.servers.servers.map(s => s.serverId)") or []) == 3 and page.eval(
        "window.adminApp.$store.state.servers.servers.map(s => s.serverId)"), 15, "three servers")
    assert sorted(servers) == ["a", "b", "c"]
    want = set().union(*(socket_ids(s) for s in clients))
    shown = wait_until(lambda: set(page.eval(
        "(window.adminApp.$store.state.main.namespaces.find(n => n.name === '/') || {sockets: []})"
        ".sockets.map(s => s.id)") or []) == want and want, 15, "every node's sockets in the UI")
    rooms = set(page.eval("window.adminApp.$store.state.main.namespaces.find(n => n.name === '/')"
                          ".rooms.map(r => r.name)"))
    assert {"lobby", "room-a", "room-b", "room-c"} <= rooms, rooms
    page.eval("window.location.hash = '#/sockets'")
    wait_until(lambda: page.eval("document.querySelectorAll('tbody tr').length") == 6, 10, "the sockets table")
    shot = tmp_path / "admin-ui-sockets.png"
    page.screenshot(shot)
    print(f"\nadmin UI: {len(shown)} sockets on 3 nodes, rooms {sorted(rooms)}; screenshot {shot}")


def test_with_actions_configured_the_admin_moves_and_disconnects_a_socket_on_another_node(processes, redis_server,
                                                                                          start_node):
    env = {"JWT_SECRET": SECRET, "ADMIN_UI_PASSWORD": PASSWORD, "ADMIN_UI_READONLY": "false"}
    a, b = (start_node(redis_server.url, node_id=n, **env) for n in "ab")
    victim = NodeClients(processes, {"url": b.url, "transports": ["websocket"], "auth": {"token": token("v")}},
                         name="victim")
    victim.wait_ready()
    watcher = admin(processes, a, PASSWORD, "admin-actions")
    assert watcher.wait("event", event="config")[0]["data"] == {"supportedFeatures": ["DISCONNECT", "JOIN", "LEAVE"]}
    sid = victim.of("connected")[0]["id"]
    # As the UI sends them: (nsp, room, id). The victim's pod makes it join, as a subscribe would.
    watcher.send({"cmd": "emit", "event": "join", "args": ["/", "news", sid]})
    wait_until(lambda: any(s["id"] == sid and "news" in s["rooms"]
                           for e in watcher.of("event", event="all_sockets") for s in e["data"]), 10,
               "the UI's view shows the socket in news")
    assert a.publish({"room": "news", "event": "flash", "data": 1}, API_TOKEN).status_code == 202
    assert [e["data"] for e in victim.settle("flash", 1)] == [1]
    watcher.send({"cmd": "emit", "event": "leave", "args": ["/", "news", sid]})
    wait_until(lambda: any(s["id"] == sid and "news" not in s["rooms"]
                           for e in watcher.of("event", event="all_sockets")[-1:] for s in e["data"]), 10,
               "the UI's view shows the socket out of news")
    assert a.publish({"room": "news", "event": "flash", "data": 2}, API_TOKEN).status_code == 202
    assert [e["data"] for e in victim.settle("flash", 1)] == [1], "out of news: the second flash is not its"
    watcher.send({"cmd": "emit", "event": "_disconnect", "args": ["/", False, sid]})  # as the UI sends it
    assert victim.wait("disconnect")[0]["reason"] == "io server disconnect"
