"""A recovery cannot make a node hold unbounded history: a client in many rooms, each
with a long history since it left, gets at most 10,000 messages (16 MB) replayed; the
rooms past that budget are reported broken (`continuity_broken`,
`history-too-long-to-replay`) for the app to resync, not replayed."""

from __future__ import annotations

import json
import subprocess

from harness import NodeClients, PushServer, contract, wait_until

ROOMS = [f"r{i:02d}" for i in range(20)]
PER_ROOM = 600  # 20 x 600 = 12,000 > the budget of 10,000
BUDGET = 10_000


def test_a_recovery_replays_at_most_its_budget_and_reports_the_rest(processes, redis_server):
    node = PushServer(processes, redis_url=redis_server.url, node_id="a",
                      env={"API_TOKEN": "t", "HISTORY_MAX_MESSAGES": 1000}).start()
    client = NodeClients(processes, {"url": node.url, "transports": ["websocket"], "rooms": ROOMS})
    client.wait_ready()
    assert node.publish({"event": "m", "room": ROOMS[0], "data": "first"}, "t").status_code == 202
    client.wait("event", event="m")
    client.send({"cmd": "drop"})
    client.wait("disconnect")
    # The rooms' histories grow while it is away (written straight into Redis: fast).
    channel = contract()["defaults"]["REDIS_CHANNEL"]
    commands = "".join(
        f"XADD {channel}:h:/:r:{room} * m {json.dumps(json.dumps({'event': 'm', 'data': k, 'room': room, 'namespace': '/'}))}\n"
        for room in ROOMS for k in range(PER_ROOM))
    subprocess.run(["redis-cli", "-p", str(redis_server.port)], input=commands, capture_output=True, text=True, check=True, timeout=60)
    client.send({"cmd": "connect"})
    again = client.wait("connected", 2)[1]
    assert again["recovered"] is False
    broken = client.wait("event", event=contract()["socket"]["CONTINUITY_BROKEN"])[0]["data"]
    assert broken["reason"] == "history-too-long-to-replay", broken
    whole_rooms = BUDGET // PER_ROOM
    assert len(broken["rooms"]) == len(ROOMS) - whole_rooms, broken
    replayed = wait_until(lambda: len(client.events("m")) >= 1 + whole_rooms * PER_ROOM and client.events("m"), 30,
                          "the replay of the rooms within the budget")
    assert len(replayed) - 1 == whole_rooms * PER_ROOM <= BUDGET
    print(f"\nrecovery of {len(ROOMS)} rooms x {PER_ROOM} missed: {len(replayed) - 1} replayed (budget {BUDGET}), "
          f"{len(broken['rooms'])} rooms reported broken")
