#!/usr/bin/env python3
"""Summary of a benchmarks/allreduce/sweep.sh run: AllReduce busbw per round, ranks and
transport, Gloo's, and shm / Gloo in each round. Usage: summarize.py RAW.jsonl"""
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    if r.get("impl") == "gloo":
        return "gloo"
    return r["transport"].split()[0] if "shm=off" in r["transport"] else "shm"
table = {}
for r in rows:
    if r.get("op") != "allreduce":
        continue
    table.setdefault((r["ranks"], key(r)), {})[r["round"]] = r["busbw_gbs"]
ranks = sorted({k[0] for k in table})
kinds = sorted({k[1] for k in table}, key=lambda k: ["shm", "tls", "tcp", "quic", "gloo"].index(k))
print("| ranks | " + " | ".join(f"{k} busbw GB/s (rounds)" for k in kinds) + " | shm / gloo per round (median) |")
print("|---|" + "---|" * (len(kinds) + 1))
for n in ranks:
    cells = []
    for k in kinds:
        v = table.get((n, k), {})
        cells.append(" ".join(f"{v[r]:.2f}" for r in sorted(v)))
    s, g = table.get((n, "shm"), {}), table.get((n, "gloo"), {})
    ratios = [s[r] / g[r] for r in sorted(s) if r in g]
    rs = " ".join(f"{x:.2f}" for x in ratios) + (f" ({statistics.median(ratios):.2f})" if ratios else "")
    print(f"| {n} | " + " | ".join(cells) + f" | {rs} |")
