"""The socket.io Admin UI on a 3-node local cluster (#28): `spec.adminUi` with its password
from local mode's secrets (env `PUSHCLUSTER_SECRET_<NAME>_<KEY>`), the official web app
through the front door in headless Chromium, listing every node and the sockets of all
three with their rooms."""

from __future__ import annotations

import json

from harness import wait_until
from harness.local import ARTIFACTS, CONTRACT, LocalCluster, clients, manifest

PASSWORD = "local-admin-password"


def test_the_admin_ui_lists_every_node_s_sockets_through_the_front_door(tmp_path, processes, chromium):
    spec = manifest("admin", 3, 4, "cookie")
    spec["spec"]["adminUi"] = {"passwordSecretRef": {"name": "admin-ui", "key": "password"}}
    env = {"PUSHCLUSTER_SECRET_ADMIN_UI_PASSWORD": PASSWORD}
    with LocalCluster(tmp_path, spec, env=env) as cluster:
        # Straight to each node's client port: two sockets on every node.
        swarms = [clients(processes, {"url": f"http://{node['client']}", "transports": ["websocket"], "count": 2,
                                      "rooms": ["lobby", f"room-{node['name']}"]}, name=f"clients-{node['name']}")
                  for node in cluster.nodes()]
        for swarm in swarms:
            swarm.wait_ready()
        want = {line["id"] for swarm in swarms for line in swarm.of("connected")}
        names = sorted(node["name"] for node in cluster.nodes())
        page = chromium(cluster.endpoint + CONTRACT["paths"]["ADMIN_UI"])
        wait_until(lambda: page.eval("!!document.querySelector('[data-app]')"), 20, "the Admin UI app")
        page.eval("""(() => {
            const root = document.querySelector('[data-app]').__vue__.$root;
            const find = (vm) => vm.tryConnect ? vm : vm.$children.map(find).find(Boolean);
            window.adminApp = find(root);
            window.adminApp.tryConnect(%s, %s, {username: "admin", password: %s}, true, "/socket.io", "default");
            return true;
        })()""" % (json.dumps(cluster.endpoint), json.dumps(CONTRACT["socket"]["ADMIN_NAMESPACE"]),
                   json.dumps(PASSWORD)))
        servers = wait_until(lambda: sorted(page.eval(
            "window.adminApp.$store.state.servers.servers.map(s => s.serverId)") or []) == names and names,
            15, f"the servers {names}")
        shown = wait_until(lambda: set(page.eval(
            "(window.adminApp.$store.state.main.namespaces.find(n => n.name === '/') || {sockets: []})"
            ".sockets.map(s => s.id)") or []) == want and want, 15, "every node's sockets in the UI")
        rooms = set(page.eval("window.adminApp.$store.state.main.namespaces.find(n => n.name === '/')"
                              ".rooms.map(r => r.name)"))
        assert {"lobby", *(f"room-{n}" for n in names)} <= rooms, rooms
        page.eval("window.location.hash = '#/sockets'")
        wait_until(lambda: page.eval("document.querySelectorAll('tbody tr').length") == 6, 10, "the sockets table")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(ARTIFACTS / "local-admin-ui.png")
        print(f"\nlocal admin UI: servers {servers}, {len(shown)} sockets; e2e/artifacts/local-admin-ui.png")
