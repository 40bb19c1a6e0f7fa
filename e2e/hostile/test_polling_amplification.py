"""Hostile-input finding 8: ten 1 MB long-polling POSTs full of `subscribe` packets grew a
node by 95 MB, kept. With the per-socket budget of room requests, all but a burst of them
are refused without work; the growth is measured and bounded here."""

from __future__ import annotations

import json

import requests
from harness import PushServer, contract
from harness.raw import rss_mb

SEPARATOR = "\x1e"  # Engine.IO v4 packet separator in a polling payload


def test_polling_posts_full_of_subscribes_do_not_grow_the_node(processes):
    node = PushServer(processes, env={"API_TOKEN": "t"}).start()
    path = node.url + contract()["paths"]["SOCKET_IO"]
    base = rss_mb(node.proc.pid)
    statuses = []
    for post in range(10):
        handshake = requests.get(path, params={"EIO": "4", "transport": "polling"}, timeout=10)
        sid = json.loads(handshake.text[1:])["sid"]
        requests.post(path, params={"EIO": "4", "transport": "polling", "sid": sid}, data="40", timeout=10)
        requests.get(path, params={"EIO": "4", "transport": "polling", "sid": sid}, timeout=10)  # CONNECT reply
        packets, size, n = [], 0, 0
        while size < 990_000:
            packet = f'42{n}["subscribe",{{"rooms":["amp-{post}-{n}"]}}]'
            packets.append(packet)
            size += len(packet) + 1
            n += 1
        r = requests.post(path, params={"EIO": "4", "transport": "polling", "sid": sid},
                          data=SEPARATOR.join(packets), timeout=30)
        statuses.append(r.status_code)
    grown = rss_mb(node.proc.pid) - base
    print(f"\npolling amplification: 10 POSTs of ~1 MB of subscribes (answered {set(statuses)}) -> RSS +{grown:.0f} MB"
          " (was +95 MB)")
    assert grown < 60, f"RSS grew by {grown:.0f} MB"
    assert node.get_admin("healthz").status_code == 200
