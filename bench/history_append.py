#!/usr/bin/env python3
"""The Redis cost of one publish as a room's history fills (#24): push-server's append
script (KEYS and ARGV as push-server passes them, history on) now and as of the commit
before it looked at the oldest entry first, each on a stream filled to `maxMessages`
(100, 300, 1,000), then APPENDS calls; Redis's own accounting (`INFO commandstats`,
reset after the fill) gives the microseconds per call. Prints the Markdown section.

    bench/history_append.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from local_redis import cli, free_port, wait


ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (100, 300, 1000)
APPENDS = int(os.environ.get("APPENDS", "20000"))
SCRIPT = "push-server/src/history/script.rs"
# The last commit whose append script walked the whole stream looking for the age cut.
BEFORE = "e970385"
SERVER_CPUS = os.environ.get("SERVER_CPUS", "0")


def usec_per_call(port: int, command: str) -> float:
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            fields = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"])
    raise SystemExit(f"history_append: no {command} calls counted")


def append_script(source: str) -> str:
    match = re.search(r'const APPEND: &str = r#"(.*?)"#;', source, re.S)
    if match is None:
        raise SystemExit("history_append: no APPEND script in push-server/src/history/script.rs")
    return match.group(1)


def measure(length: int, scripts: dict[str, str], workdir: Path) -> dict:
    """Each script appends APPENDS messages to a stream of its own already holding
    `length` (its bound), as push-server calls it (KEYS: log, lease, taken, idempotency
    key, stream, trimmed, created; ARGV: message, log length, no lease, no digest, 0, no
    idempotency, max messages, ttl ms)."""
    port = free_port()
    redis = subprocess.Popen(["taskset", "-c", SERVER_CPUS, "redis-server", "--port", str(port),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, cwd=workdir)
    try:
        wait("history_append: redis-server", lambda: cli(port, "PING").strip() == "PONG")
        row: dict = {"max_messages": length, "appends": APPENDS}
        message = json.dumps({"event": "m", "data": {"n": 0, "text": "x" * 60}})
        for name, body in scripts.items():
            sha = cli(port, "SCRIPT", "LOAD", body).strip()
            keys = [f"{name}:{k}" for k in ("log", "lease", "taken", "idem", "stream", "trimmed", "created")]
            args = ["EVALSHA", sha, "7", *keys, message, "10000", "", "", "0", "0", str(length), "3600000"]
            cli(port, "-r", str(length), *args)
            cli(port, "CONFIG", "RESETSTAT")
            cli(port, "-r", str(APPENDS), *args)
            row[f"{name}_usec_per_call"] = usec_per_call(port, "evalsha")
            row[f"{name}_history_length"] = int(cli(port, "XLEN", keys[4]))
        return row
    finally:
        redis.terminate()
        try:
            redis.wait(timeout=10)
        except subprocess.TimeoutExpired:
            redis.kill()


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    current = (ROOT / SCRIPT).read_text()
    before = subprocess.run(["git", "show", f"{BEFORE}:{SCRIPT}"], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout
    scripts = {"before": append_script(before), "now": append_script(current)}
    with tempfile.TemporaryDirectory() as workdir:
        rows = [measure(length, scripts, Path(workdir)) for length in LENGTHS]
    (out / "history_append.json").write_text(json.dumps(rows, indent=2))
    print("## Redis cost of a publish as a room's history fills\n")
    print(f"The append script push-server runs per publish (history on), now and as of {BEFORE} (before it "
          "looked at the oldest entry first: `XREVRANGE stream (floor - COUNT 1` with nothing older than "
          "the age floor walks the whole stream), on one redis-server pinned to CPU "
          f"{SERVER_CPUS}: each fills a room's stream to `maxMessages`, then appends {APPENDS} messages to "
          "it (`redis-cli -r`); `INFO commandstats`, reset after the fill, gives µs per call.\n")
    shown = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out
    print(f"Produced by `bench/run --only history`; raw JSON in `{shown}/`.\n")
    print("| maxMessages (history length) | before, µs/call | now, µs/call |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['max_messages']} ({r['now_history_length']}) | {r['before_usec_per_call']:.1f} "
              f"| {r['now_usec_per_call']:.1f} |")
    print("\nReference (issue #24, this machine kind, before): the scan alone 10.5 / 37 / 102 µs at "
          "100 / 300 / 1,000 entries on a bare redis-server; 150–169 µs per EVALSHA at 5,000 "
          "publishes/s over 4 nodes, 123–139 µs of it the scan.")


if __name__ == "__main__":
    main()
