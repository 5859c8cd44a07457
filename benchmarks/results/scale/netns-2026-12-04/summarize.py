#!/usr/bin/env python3
"""Ratios of issue 15 from the rounds of run.sh: python3 summarize.py [DIR] > summary.md"""
import json, os, statistics, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rounds = sorted(x for x in os.listdir(d) if x.startswith("round"))


def rows(r, f):
    p = os.path.join(d, r, f + ".jsonl")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []


def ops(rs):
    # allreduce prints the algorithm that ran ("auto" shows as its pick), in the order of
    # the --algo list: ring, rd, hier, rdoneshot, auto at 4x2; ring, hier at 64 MiB; ring,
    # rd, oneshot, auto on one host.
    return [x for x in rs if x["op"] == "allreduce"]


print("| round | 4x2 4 KiB: ring | rd | hier | rdoneshot | auto (pick) | **auto / ring** | rd / ring | rdoneshot / ring | 4x2 64 MiB busbw: ring | hier | **hier / ring** | 1x4 4 KiB: ring | rd | oneshot | auto (pick) | **auto / ring** | rd / ring |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
agg = {k: [] for k in ("a42", "rd42", "ro42", "h64", "a14", "rd14")}
for r in rounds:
    s, b, o = ops(rows(r, "4x2-4KiB")), ops(rows(r, "4x2-64MiB")), ops(rows(r, "1x4-4KiB"))
    if len(s) != 5 or len(b) != 2 or len(o) != 4:
        print(f"| {r} | incomplete ({len(s)}, {len(b)}, {len(o)} rows) |")
        continue
    ring, rd, hier, ro, auto = (x["time_us"] for x in s)
    br, bh = (x["busbw_gbs"] for x in b)
    oring, ord_, oos, oauto = (x["time_us"] for x in o)
    agg["a42"].append(auto / ring); agg["rd42"].append(rd / ring); agg["ro42"].append(ro / ring)
    agg["h64"].append(bh / br); agg["a14"].append(oauto / oring); agg["rd14"].append(ord_ / oring)
    print(f"| {r} | {ring:.0f} µs | {rd:.0f} | {hier:.0f} | {ro:.0f} | {auto:.0f} ({s[4]['algo']}) | **{auto/ring:.2f}** | {rd/ring:.2f} | {ro/ring:.2f} "
          f"| {br*1e3:.0f} MB/s | {bh*1e3:.0f} | **{bh/br:.2f}** | {oring:.0f} µs | {ord_:.0f} | {oos:.0f} | {oauto:.0f} ({o[3]['algo']}) | **{oauto/oring:.2f}** | {ord_/oring:.2f} |")
if agg["a42"]:
    m = {k: statistics.median(v) for k, v in agg.items()}
    print()
    print(f"Medians over {len(agg['a42'])} rounds: 4x2 4 KiB tuned / ring {m['a42']:.2f} (target ≤ 0.5), rd / ring {m['rd42']:.2f}, "
          f"rdoneshot / ring {m['ro42']:.2f}; 4x2 64 MiB hier / ring busbw {m['h64']:.2f} (target ≥ 1); "
          f"one host 4 ranks tuned / ring {m['a14']:.2f} (target ≤ 0.7), rd / ring {m['rd14']:.2f}.")
