#!/usr/bin/env python3
"""Prints busbw (GB/s) and median time per collective, dtype and size from the sweep's
JSON lines (gorun prefixes each with "[0] "). Usage: python3 summarize.py FILE.jsonl..."""
import json, sys

for path in sys.argv[1:]:
    rows = []
    for line in open(path):
        line = line.split("] ", 1)[-1].strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    print(f"## {path}: {rows[0]['ranks']} ranks, transport {rows[0]['transport']}, links {rows[0].get('links', '')}")
    print(f"{'op':>14} {'dtype':>6} {'algo':>9} {'bytes':>9} {'time_us':>10} {'busbw':>8} {'link':>8} {'bus/link':>8}")
    link = {r["bytes"]: r["link_gbs"] for r in rows if r["op"] == "ring-exchange"}
    for r in rows:
        if r["op"] == "ring-exchange":
            continue
        l = link.get(r["bytes"]) or link.get(max(k for k in link if k <= r["bytes"] * 2))
        print(f"{r['op']:>14} {r['dtype']:>6} {r.get('algo', ''):>9} {r['bytes']:>9} {r['time_us']:>10.0f} {r['busbw_gbs']:>8.3f} {l:>8.3f} {r['busbw_gbs'] / l:>8.2f}")
    print()
