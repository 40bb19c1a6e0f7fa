"""Side-by-side of two push-server suite results (before / after a change), as Markdown.

    python3 bench/before_after.py BEFORE.json AFTER.json [--label-before X] [--label-after Y]
    python3 bench/before_after.py B1.json,B2.json,B3.json A1.json,A2.json,A3.json

Rows: idle RSS per WebSocket connection at each size both measured; the fan-out step
rates both ran (delivered/s, p99, server CPU µs per delivery); cross-node p99. With
comma-separated files (rounds of bench/ab, run alternately) or --rounds, every round's
figure is shown, in round order: one run per side is not enough to tell a few per cent
apart. --fanout-figures and --cross-figures choose that table's rows (names in FIGURES).
"""
from __future__ import annotations

import argparse
import json
from typing import Callable


def fanout_steps(result: dict) -> dict[float, dict]:
    return {s["rate"]: s for s in (result.get("fanout") or {}).get("steps", [])}


def fastest_ok(result: dict) -> dict | None:
    ok = [s for s in fanout_steps(result).values() if not s.get("overloaded")]
    return max(ok, key=lambda s: s["delivered_per_s"], default=None)


def step_figures(cross: bool) -> dict[str, tuple[str, bool, Callable[[dict], str]]]:
    """Figures of one step the rounds table can show: name → (label, is a latency, cell).
    Cross-node latencies are those of node 1's clients (every delivery there crossed
    Redis); its figures are small and get two decimals."""
    lat = (lambda s: s["latency_by_node"][-1]) if cross else (lambda s: s["latency"])
    p50, p99, cpu = (2, 2, 2) if cross else (1, 0, 1)
    return {
        "delivered": ("delivered msgs/s", False, lambda s: f"{s['delivered_per_s']:.0f}"),
        "p50": ("p50 ms", True, lambda s: f"{lat(s)['p50_ms']:.{p50}f}"),
        "p99": ("p99 ms", True, lambda s: f"{lat(s)['p99_ms']:.{p99}f}"),
        "cpu": ("server µs CPU per delivery", False, lambda s: f"{s['server_cpu_us_per_delivery']:.{cpu}f}"),
        "overloaded": ("overloaded", False, lambda s: "yes" if s.get("overloaded") else "no"),
    }


FIGURES = list(step_figures(False))


def figure_list(value: str) -> list[str]:
    """`--fanout-figures` / `--cross-figures`: comma-separated names of FIGURES."""
    names = value.split(",")
    if unknown := [n for n in names if n not in FIGURES]:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {','.join(FIGURES)}")
    return names


def rounds(before: list[dict], after: list[dict], lb: str, la: str,
           fanout_figures: list[str], cross_figures: list[str]) -> None:
    """Per fan-out step and for cross-node: each round's figures, both sides."""
    print(f"| figure (each round) | {lb} | {la} |")
    print("| --- | ---: | ---: |")

    def row(name: str, step_of, show) -> None:
        """One figure of the step `step_of(result)` picks, every round, both sides."""
        cells = (" / ".join("–" if (s := step_of(r)) is None else show(s) for r in side)
                 for side in (before, after))
        print(f"| {name} | {' | '.join(cells)} |")

    # Every rate any round ran: a round stops at its first overloaded step ("–" past it).
    rates = sorted(set.union(*(set(fanout_steps(r)) for r in before + after)))
    fanout = step_figures(cross=False)
    for rate in rates:
        step_at = lambda r, rate=rate: fanout_steps(r).get(rate)  # noqa: E731
        for label, _, show in (fanout[f] for f in fanout_figures):
            row(f"fan-out {rate:g} publishes/s: {label}", step_at, show)
    if "delivered" in fanout_figures:
        row("fastest fan-out step not overloaded: delivered/s (at publishes/s)", fastest_ok,
            lambda s: f"{s['delivered_per_s']:.0f} ({s['rate']:g})")

    def cross_step(r: dict) -> dict | None:
        return next(iter((r.get("cross_node") or {}).get("steps") or []), None)

    cross = step_figures(cross=True)
    for label, latency, show in (cross[f] for f in cross_figures):
        row(f"cross-node{', clients of node 1' if latency else ''}: {label}", cross_step, show)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--label-before", default="before")
    ap.add_argument("--label-after", default="after")
    ap.add_argument("--rounds", action="store_true", help="the rounds table even for one file a side")
    ap.add_argument("--fanout-figures", type=figure_list, default="cpu,p99,overloaded",
                    help=f"rounds table rows per fan-out rate, of {','.join(FIGURES)}")
    ap.add_argument("--cross-figures", type=figure_list, default="p99,cpu", help="rounds table cross-node rows")
    a = ap.parse_args()
    lb, la = a.label_before, a.label_after
    if a.rounds or "," in a.before or "," in a.after:
        rounds(*([json.load(open(p)) for p in side.split(",")] for side in (a.before, a.after)), lb, la,
               a.fanout_figures, a.cross_figures)
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
