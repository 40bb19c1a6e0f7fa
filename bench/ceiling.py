"""The publish-ceiling table of bench/ceiling: two sides' cross-node results (4 nodes,
full histories), each a comma-separated list of rounds, as Markdown.

    python3 bench/ceiling.py B1.json,B2.json A1.json,A2.json [--labels before,after]

One row per publish rate; per side and round: achieved publishes/s, p99 ms (all
clients), Redis's CPU and the nodes' CPU (% of one CPU) over the step. The last line
gives each round's ceiling: the highest rate the cluster kept up with — p99 ≤ 250 ms,
nothing lost beyond the loadgen's 0.5 % (its `overloaded`), and at least 95 % of the rate
achieved (a publisher held back by slow answers stamps its messages late, so a cluster
that cannot keep up shows as a rate not achieved before it shows in p99).
"""
from __future__ import annotations

import argparse
import json


def steps(path: str) -> list[dict]:
    with open(path) as f:
        return (json.load(f).get("cross_node") or {}).get("steps") or []


def kept_up(step: dict) -> bool:
    return not step.get("overloaded") and step["achieved_rate"] >= 0.95 * step["rate"]


def cell(step: dict | None) -> str:
    if step is None:
        return "–"
    over = "" if kept_up(step) else " **not kept up**"
    return (f"{step['achieved_rate']:.0f}/s · {step['latency']['p99_ms']:.1f} ms · "
            f"Redis {step.get('redis_cpu_pct', 0):.0f} % · nodes {step['server_cpu_pct']:.0f} %{over}")


def ceiling(run: list[dict]) -> str:
    first = next((s["rate"] for s in run if not kept_up(s)), None)
    ok = [s["rate"] for s in run if kept_up(s) and (first is None or s["rate"] < first)]
    top = f"{max(ok):g}/s" if ok else "none"
    past = f", not kept up at {first:g}/s" if first is not None else ", kept up at every rate"
    return top + past


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sides", nargs=2, help="comma-separated JSON files of each side, round order")
    ap.add_argument("--labels", default="before,after")
    a = ap.parse_args()
    labels = a.labels.split(",")
    runs = [(f"{labels[i]} r{r + 1}", steps(p)) for i, side in enumerate(a.sides)
            for r, p in enumerate(side.split(","))]
    rates = sorted({s["rate"] for _, run in runs for s in run})
    print("| publishes/s | " + " | ".join(name for name, _ in runs) + " |")
    print("| ---: |" + " --- |" * len(runs))
    for rate in rates:
        by_run = [next((s for s in run if s["rate"] == rate), None) for _, run in runs]
        print(f"| {rate:g} | " + " | ".join(cell(s) for s in by_run) + " |")
    print("| ceiling (highest rate kept up with) | " + " | ".join(ceiling(run) for _, run in runs) + " |")


if __name__ == "__main__":
    main()
