#!/usr/bin/env python3
"""Summarize benchmarks/results/bf16/allreduce/*.jsonl: busbw (GB/s, from the median time) per
run, dtype and rank count, and each compressed dtype's time relative to fp32 in the same run."""
import glob, json, os, sys
d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "allreduce")
for f in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
    rows = {}
    for line in open(f):
        line = line.strip()
        if line.startswith("[0] "):
            line = line[4:]
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        rows[r["dtype"]] = r
    if not rows:
        print(os.path.basename(f), "no rows"); continue
    fp32 = rows.get("fp32")
    parts = []
    for dt in ("fp32", "fp16", "bf16", "raw"):
        if dt not in rows: continue
        r = rows[dt]
        s = "%s busbw %.3f (min-time %.3f)" % (dt, r["busbw_gbs"], r["busbw_gbs"] * r["time_us"] / r["min_us"])
        if fp32 and dt in ("fp16", "bf16"):
            s += " t/fp32 %.2f" % (r["time_us"] / fp32["time_us"])
        parts.append(s)
    print(os.path.basename(f), "| " + " | ".join(parts))
