#!/usr/bin/env python3
"""Markdown tables of the allocator comparison (each cell: median over the rounds, range
in brackets; per-round values are in the raw files):
  summarize.py ROUNDS_DIR [candidate ...]     run.sh's results
  summarize.py --cpu CPU_DIR [candidate ...]  cpu.sh's results"""

import glob
import json
import os
import re
import statistics
import sys


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs, fmt):
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if len(xs) > 1 else fmt.format(med(xs))


def cpu_table(d, names):
    names = names or sorted({re.sub(r"^cpu-(.*)-r\d+\.json$", r"\1", os.path.basename(p))
                             for p in glob.glob(f"{d}/cpu-*-r*.json")})
    print("| candidate | rounds | rate /s | delivered/s | p99 ms | server µs CPU/delivery | of which user |")
    print("|" + " --- |" * 7)
    for n in names:
        runs = [json.load(open(p))["fanout"]["steps"] for p in sorted(glob.glob(f"{d}/cpu-{n}-r*.json"))]
        rates = sorted({st["rate"] for steps in runs for st in steps})
        for rate in rates:
            st = [x for steps in runs for x in steps if x["rate"] == rate]
            lost = sum(x["lost"] for x in st)
            print(f"| {n} | {len(st)} | {rate:.0f} | {med([x['delivered_per_s'] for x in st]):,.0f}"
                  f"{' (lost ' + str(lost) + ')' if lost else ''} | {rng([x['latency']['p99_ms'] for x in st], '{:.1f}')} "
                  f"| {rng([x['server_cpu_us_per_delivery'] for x in st], '{:.1f}')} "
                  f"| {rng([x['server_user_us_per_delivery'] for x in st], '{:.2f}')} |")


def main():
    if sys.argv[1] == "--cpu":
        return cpu_table(sys.argv[2], sys.argv[3:])
    d = sys.argv[1]
    names = sys.argv[2:] or sorted({re.sub(r"^suite-(.*)-r\d+\.json$", r"\1", os.path.basename(p))
                                    for p in glob.glob(f"{d}/suite-*-r*.json")})
    print("| candidate | rounds | idle KiB/conn @5,000 | RSS before spike MiB | peak MiB | 5 s after all gone MiB "
          "| kept after 5 s MiB | returned after 5 s | 30 s after MiB | fan-out 20/s delivered/s | p99 ms "
          "| server µs CPU/delivery (user) | 900 KB × 1,000 broadcast: peak / after, MB |")
    print("|" + " --- |" * 13)
    for n in names:
        idle, dps, p99, cpu, usr, lost = [], [], [], [], [], 0
        for p in sorted(glob.glob(f"{d}/suite-{n}-r*.json")):
            s = json.load(open(p))
            idle.append(s["idle"][0]["rss_per_connection_kib"])
            st = s["fanout"]["steps"][0]
            dps.append(st["delivered_per_s"]); p99.append(st["latency"]["p99_ms"])
            cpu.append(st["server_cpu_us_per_delivery"]); usr.append(st["server_user_us_per_delivery"])
            lost += st["lost"]
        sp = [json.load(open(p)) for p in sorted(glob.glob(f"{d}/spike-{n}-r*.json")) if not p.endswith(".fanout.json")]
        mib = lambda xs: [x / 1024 for x in xs]
        before = mib([s["before_kib"] for s in sp]); peak = mib([s["peak_kib"] for s in sp])
        a5 = mib([s["after_kib"]["5s"] for s in sp]); a30 = mib([s["after_kib"]["30s"] for s in sp])
        kept = mib([s["kept_5s_kib"] for s in sp]); ret = [100 * s["returned_5s"] for s in sp]
        large = []
        for p in sorted(glob.glob(f"{d}/large-{n}-r*.txt")):
            m = re.search(r"RSS peak \+(\d+) MB .*after they left \+(-?\d+) MB", open(p).read())
            large.append(f"{int(m.group(1)):+d} / {int(m.group(2)):+d}" if m else "failed")
        print(f"| {n} | {len(idle)} | {rng(idle, '{:.2f}')} | {med(before):.1f} | {med(peak):.1f} | {med(a5):.1f} "
              f"| {rng(kept, '{:.1f}')} | {med(ret):.0f} % | {med(a30):.1f} | {med(dps):,.0f}{' (lost ' + str(lost) + ')' if lost else ''} "
              f"| {rng(p99, '{:.1f}')} | {rng(cpu, '{:.1f}')} ({med(usr):.2f}) | {', '.join(large)} |")


if __name__ == "__main__":
    main()
