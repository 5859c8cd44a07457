#!/usr/bin/env python3
"""Summarise the final sweep (sweep.sh JSON lines, tcp and Gloo): per rank count, busbw of
tcp's AllReduce by algorithm, of tcp's raw exchange and of Gloo, each median (range) over the
rounds, and the ratios per round (each against the same round's Gloo), then their medians."""
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
val = defaultdict(dict)  # (ranks, what) -> {round: busbw}
cpu = defaultdict(list)
for r in rows:
    if r.get("impl") == "gloo":
        what = "gloo"
    elif r["op"] == "ring-exchange":
        what = f"tcp raw exchange ({r.get('write_bytes', r.get('chunk_bytes', 0)) >> 10} KiB writes)"
    else:
        what = f"tcp allreduce {r.get('algo', '?')}"
    val[(r["ranks"], what)][r["round"]] = r["busbw_gbs"]
    if "job_cpu_us" in r:
        cpu[(r["ranks"], what)].append(r["job_cpu_us"] / 1e3)

def med(v):
    return statistics.median(v)

print("| ranks | what | busbw GB/s median (range) | job CPU ms/op median | rounds |")
print("|---|---|---|---|---|")
for k in sorted(val):
    v = list(val[k].values())
    c = f"{med(cpu[k]):.0f}" if cpu[k] else ""
    print(f"| {k[0]} | {k[1]} | {med(v):.3f} ({min(v):.3f}–{max(v):.3f}) | {c} | {len(v)} |")
print()
print("| ranks | ratio (same round) | median (range) |")
print("|---|---|---|")
for n in sorted({k[0] for k in val}):
    g = val.get((n, "gloo"), {})
    for (nn, what), v in sorted(val.items()):
        if nn != n or what == "gloo":
            continue
        f = [v[rd] / g[rd] for rd in v if rd in g and g[rd] > 0]
        if f:
            print(f"| {n} | {what} / gloo | {med(f):.2f}× ({min(f):.2f}–{max(f):.2f}) |")
    ex = [v for (nn, what), v in val.items() if nn == n and what.startswith("tcp raw")]
    for (nn, what), v in sorted(val.items()):
        if nn == n and what.startswith("tcp allreduce") and ex:
            f = [v[rd] / ex[0][rd] for rd in v if rd in ex[0]]
            print(f"| {n} | {what} / raw exchange | {med(f):.2f} ({min(f):.2f}–{max(f):.2f}) |")
