#!/usr/bin/env python3
"""Tables of run.sh's JSON: python3 summarize.py [DIR] > summary.md"""
import json, os, statistics, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def rows(name):
    p = os.path.join(d, name + ".jsonl")
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.startswith("{")]


def labelled(name, algos):
    # allreduce prints what ran ("auto" as its pick), in the order of --algo.
    rs = [x for x in rows(name) if x["op"] == "allreduce"]
    return list(zip(algos, rs)) if len(rs) == len(algos) else []


def table(title, names, algos):
    print(f"### {title}\n")
    print("| run | " + " | ".join(f"{a} µs (job CPU µs)" for a in algos) + " | " + " | ".join(f"{a} / ring" for a in algos[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(algos) - 1))
    ratios = {a: [] for a in algos[1:]}
    for n in names:
        lab = labelled(n, algos)
        if not lab:
            print(f"| {n} | missing |")
            continue
        ring = lab[0][1]["time_us"]
        cells = []
        for a, x in lab:
            pick = f" ({x['algo']})" if a == "auto" else ""
            cpu = x.get("job_cpu_us")
            cells.append(f"{x['time_us']:.0f}{pick}" + (f" ({cpu:.0f})" if cpu else ""))
        for a, x in lab[1:]:
            ratios[a].append(x["time_us"] / ring)
        print(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(f"{x['time_us']/ring:.2f}" for _, x in lab[1:]) + " |")
    if any(ratios.values()):
        print("\nmedian / ring: " + ", ".join(f"{a} {statistics.median(v):.2f}" for a, v in ratios.items() if v))
    print()


table("One host, 4 ranks, 4 KiB, before (7426db4)", [f"r{r}-1x4-base" for r in (1, 2, 3)], ["ring", "rd", "auto"])
table("One host, 4 ranks, 4 KiB, lap, one-shot, MAP_POPULATE (464590b)", [f"r{r}-1x4-pop" for r in (1, 2, 3)], ["ring", "rd", "oneshot", "auto"])
table("One host, 4 ranks, 4 KiB, + pages touched at setup (224c947)", [f"r{r}-1x4-after" for r in (1, 2, 3)], ["ring", "rd", "oneshot", "auto"])
table("Past the first pass around the rings (--warmup 1200), before", ["warm-1x4-base"], ["ring", "rd", "auto"])
table("Past the first pass around the rings (--warmup 1200), after", ["warm-1x4-after"], ["ring", "rd", "oneshot", "auto"])
table("One host, 3 ranks (after)", ["n3-after"], ["ring", "rd", "oneshot"])
table("One host, 8 ranks (after)", ["n8-after"], ["ring", "rd", "oneshot"])
table("4 hosts × 2 ranks, netns, TLS between hosts (after)", ["r1-4x2-after", "r2-4x2-after"], ["ring", "rd", "oneshot", "rdoneshot", "auto"])
table("4 hosts × 2 ranks, 4 KiB, before (7426db4; run-4x2.sh)", ["r1-4x2-base", "r2-4x2-base"], ["ring", "rd", "auto"])
table("4 hosts × 2 ranks, 4 KiB, after (224c947; run-4x2.sh)", ["r1-4x2-after2", "r2-4x2-after2"], ["ring", "rd", "auto"])
