#!/usr/bin/env python3
"""Summarise ab.sh output: per variant and op/algo, the median over rounds of busbw and of
job CPU per op, with the range, and each variant's AllReduce as a fraction of its own raw
exchange (per round, then the median)."""
import json, sys, statistics
from collections import defaultdict

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
by = defaultdict(list)
for r in rows:
    key = (r.get("variant", r.get("impl", "")), r["ranks"], r["op"], r.get("algo", ""))
    by[key].append(r)
print("| variant | ranks | op | algo | busbw GB/s median (range) | job CPU ms/op median | rounds |")
print("|---|---|---|---|---|---|---|")
for k in sorted(by):
    v = by[k]
    bw = [r["busbw_gbs"] for r in v]
    cpu = [r.get("job_cpu_us", 0) / 1e3 for r in v]
    print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {statistics.median(bw):.3f} ({min(bw):.3f}–{max(bw):.3f}) | {statistics.median(cpu):.1f} | {len(v)} |")
# AllReduce / own exchange, per round
frac = defaultdict(list)
ex = {(r.get("variant"), r["ranks"], r["round"]): r["busbw_gbs"] for r in rows if r["op"] == "ring-exchange"}
for r in rows:
    if r["op"] == "allreduce" and (r.get("variant"), r["ranks"], r["round"]) in ex:
        frac[(r.get("variant"), r["ranks"], r.get("algo", ""))].append(r["busbw_gbs"] / ex[(r.get("variant"), r["ranks"], r["round"])])
if frac:
    print()
    print("| variant | ranks | algo | AllReduce busbw / raw exchange, median (range) |")
    print("|---|---|---|---|")
    for k in sorted(frac):
        f = frac[k]
        print(f"| {k[0]} | {k[1]} | {k[2]} | {statistics.median(f):.2f} ({min(f):.2f}–{max(f):.2f}) |")
