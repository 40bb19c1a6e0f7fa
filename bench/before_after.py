"""Side-by-side of two push-server suite results (before / after a change), as Markdown.

    python3 bench/before_after.py BEFORE.json AFTER.json [--label-before X] [--label-after Y]
    python3 bench/before_after.py B1.json,B2.json,B3.json A1.json,A2.json,A3.json

Rows: idle RSS per WebSocket connection at each size both measured; the fan-out step
rates both ran (delivered/s, p99, server CPU µs per delivery); cross-node p99. With
comma-separated files (rounds of bench/ab, run alternately), every round's figure is
shown, in round order: one run per side is not enough to tell a few per cent apart.
"""
from __future__ import annotations

import argparse
import json


def fanout_steps(result: dict) -> dict[float, dict]:
    return {s["rate"]: s for s in (result.get("fanout") or {}).get("steps", [])}


def fastest_ok(result: dict) -> dict | None:
    ok = [s for s in fanout_steps(result).values() if not s.get("overloaded")]
    return max(ok, key=lambda s: s["delivered_per_s"], default=None)


def rounds(before: list[dict], after: list[dict], lb: str, la: str) -> None:
    """Per fan-out step and for cross-node: each round's CPU µs per delivery and p99."""
    print(f"| figure (each round) | {lb} | {la} |")
    print("| --- | ---: | ---: |")

    def row(name: str, step_of, show) -> None:
        """One figure of the step `step_of(result)` picks, every round, both sides."""
        cells = (" / ".join("–" if (s := step_of(r)) is None else show(s) for r in side)
                 for side in (before, after))
        print(f"| {name} | {' | '.join(cells)} |")

    rates = sorted(set.intersection(*(set(fanout_steps(r)) for r in before + after)))
    for rate in rates:
        step_at = lambda r, rate=rate: fanout_steps(r).get(rate)  # noqa: E731
        row(f"fan-out {rate:g} publishes/s: server µs CPU per delivery", step_at,
            lambda s: f"{s['server_cpu_us_per_delivery']:.1f}")
        row(f"fan-out {rate:g} publishes/s: p99 ms", step_at, lambda s: f"{s['latency']['p99_ms']:.0f}")
        row(f"fan-out {rate:g} publishes/s: overloaded", step_at, lambda s: "yes" if s.get("overloaded") else "no")

    def cross_step(r: dict) -> dict | None:
        return next(iter((r.get("cross_node") or {}).get("steps") or []), None)

    # Clients of node 1: every delivery there crossed Redis.
    row("cross-node, clients of node 1: p99 ms", cross_step, lambda s: f"{s['latency_by_node'][-1]['p99_ms']:.2f}")
    row("cross-node: server µs CPU per delivery", cross_step, lambda s: f"{s['server_cpu_us_per_delivery']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--label-before", default="before")
    ap.add_argument("--label-after", default="after")
    a = ap.parse_args()
    lb, la = a.label_before, a.label_after
    if "," in a.before or "," in a.after:
        rounds(*([json.load(open(p)) for p in side.split(",")] for side in (a.before, a.after)), lb, la)
        return
    before, after = (json.load(open(p)) for p in (a.before, a.after))
    print(f"| figure | {lb} | {la} |")
    print("| --- | ---: | ---: |")
    idle_b = {i["requested"]: i for i in before.get("idle", [])}
    for i in after.get("idle", []):
        b = idle_b.get(i["requested"])
        if b:
            print(f"| idle RSS per WebSocket connection at {i['requested']} (KiB) | "
                  f"{b['rss_per_connection_kib']:.1f} | {i['rss_per_connection_kib']:.1f} |")
    sb, sa = fanout_steps(before), fanout_steps(after)
    for rate in sorted(set(sb) & set(sa)):
        b, s = sb[rate], sa[rate]
        if b.get("overloaded") or s.get("overloaded"):
            continue
        print(f"| fan-out {rate:g} publishes/s to rooms of 1,000: delivered/s · p99 ms · server µs CPU "
              f"per delivery | {b['delivered_per_s']:.0f} · {b['latency']['p99_ms']:.1f} · "
              f"{b['server_cpu_us_per_delivery']:.1f} | {s['delivered_per_s']:.0f} · "
              f"{s['latency']['p99_ms']:.1f} · {s['server_cpu_us_per_delivery']:.1f} |")
    fb, fa = fastest_ok(before), fastest_ok(after)
    if fb and fa:
        print(f"| fastest fan-out step not overloaded: delivered/s (at publishes/s) | "
              f"{fb['delivered_per_s']:.0f} ({fb['rate']:g}) | {fa['delivered_per_s']:.0f} ({fa['rate']:g}) |")
    cb, ca = before.get("cross_node"), after.get("cross_node")
    if cb and ca and cb.get("steps") and ca.get("steps"):
        # Clients of node 1: every delivery there crossed Redis.
        pb = cb["steps"][0]["latency_by_node"][-1]["p99_ms"]
        pa = ca["steps"][0]["latency_by_node"][-1]["p99_ms"]
        print(f"| cross-node p99 at {ca['steps'][0]['rate']:g} publishes/s, clients of node 1 (ms) | "
              f"{pb:.2f} | {pa:.2f} |")


if __name__ == "__main__":
    main()
