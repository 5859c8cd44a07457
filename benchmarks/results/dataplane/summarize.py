#!/usr/bin/env python3
"""Summarize run.sh's JSON lines: per ranks and transport, median (min-max) busbw of the
AllReduce and of the raw exchange, and the ratios the issue asks for."""
import json, statistics, sys
from collections import defaultdict

bus, link = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    tr = r.get("transport", "?").split()[0]
    if r.get("impl") == "gloo":
        tr = "gloo"
    key = (r["ranks"], tr)
    (link if r["op"] == "ring-exchange" else bus)[key].append(r["busbw_gbs"])

def fmt(v):
    return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f}, n={len(v)})" if v else "-"

print("| ranks | transport | AllReduce busbw GB/s median (range) | raw exchange link GB/s |")
print("|---|---|---|---|")
for (n, tr) in sorted(bus, key=lambda k: (k[0], ["tcp", "tls", "quic", "gloo"].index(k[1]) if k[1] in ["tcp", "tls", "quic", "gloo"] else 9)):
    print(f"| {n} | {tr} | {fmt(bus[(n, tr)])} | {fmt(link.get((n, tr), []))} |")
print()
for n in sorted({k[0] for k in bus}):
    m = {tr: statistics.median(v) for (nn, tr), v in bus.items() if nn == n}
    parts = []
    if "tls" in m and "quic" in m:
        parts.append(f"tls/quic {m['tls']/m['quic']:.2f}x")
    if "tcp" in m and "quic" in m:
        parts.append(f"tcp/quic {m['tcp']/m['quic']:.2f}x")
    if "tcp" in m and "gloo" in m:
        parts.append(f"tcp/gloo {m['tcp']/m['gloo']:.2f}x")
    if "tls" in m and "gloo" in m:
        parts.append(f"tls/gloo {m['tls']/m['gloo']:.2f}x")
    print(f"{n} ranks: " + ", ".join(parts))
