#!/usr/bin/env python3
"""RSS of push-server before, at the peak of and after a spike of N WebSocket connections.

  spike.py BIN OUT.json [N]      # allocator env (MALLOC_ARENA_MAX, _RJEM_MALLOC_CONF, ...) is inherited

push-loadgen serve starts BIN pinned to CPU 0; push-loadgen fanout (pinned to CPU 1)
connects N clients in 100 rooms at 1,000/s, publishes 1/s for 5 s, and exits (every
client gone). RSS is VmRSS of /proc/PID/status: settled before (< 1% over 3 s), the peak
(sampled every 0.1 s), then 5, 10 and 30 s after the node's last client socket closed.
"""

import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 5))
LOADGEN = os.path.join(ROOT, "target/release/push-loadgen")
TOKEN = "spike-token"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def settled(pid, max_wait=10):
    readings, deadline = [], time.monotonic() + max_wait
    while True:
        readings.append(rss_kib(pid))
        if len(readings) >= 3 and abs(readings[-3] - readings[-1]) * 100 <= readings[-1]:
            return readings[-1]
        if time.monotonic() >= deadline:
            return readings[-1]
        time.sleep(1)


def main():
    binary, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    serve = subprocess.Popen(
        ["taskset", "-c", "1", LOADGEN, "serve", "--server", "push", "--push-server-bin", binary,
         "--server-cpus", "0", "--api-token", TOKEN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        info = json.loads(serve.stdout.readline())
        pid, url = info["pids"][0], info["urls"][0]
        base, base_sockets = settled(pid), sockets(pid)
        peak, done = [base], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(rss_kib(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        subprocess.run(
            ["taskset", "-c", "1", LOADGEN, "fanout", "--url", url, "--api-token", TOKEN,
             "--pid", str(pid), "--clients", str(n), "--rooms", "100", "--rates", "1",
             "--step-secs", "5", "--connect-rate", "1000", "--out", out + ".fanout.json"],
            check=True, cwd=ROOT)
        deadline = time.monotonic() + 30
        while sockets(pid) > base_sockets and time.monotonic() < deadline:
            time.sleep(0.1)
        gone = time.monotonic()
        left_sockets = sockets(pid) - base_sockets
        after = {}
        for s in (0, 5, 10, 30):
            time.sleep(max(0.0, gone + s - time.monotonic()))
            after[s] = rss_kib(pid)
        done.set()
        sampler.join()
        result = {
            "binary": binary, "clients": n, "sockets_left": left_sockets,
            "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "_RJEM", "MIMALLOC"))},
            "before_kib": base, "peak_kib": max(peak),
            "after_kib": {f"{s}s": v for s, v in after.items()},
            "kept_5s_kib": after[5] - base,
            "returned_5s": round((max(peak) - after[5]) / max(1, max(peak) - base), 3),
        }
    finally:
        serve.stdin.close()
        serve.wait(timeout=30)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
