#!/usr/bin/env bash
# GEMM, cnn layers and steps before/after this session's changes (sgemm's few-rows and
# rows-in-place paths, the direct convolution, the AVX-512 ReLU and pooling), side by side in one run, and
# the cnn step against PyTorch's. Builds benchmarks/flops at BASE (default 7426db4, main before
# them) and at the working tree, both with the working tree's measuring code (process CPU time,
# -clock cpu), then alternates base, new and torch_lenet.py (Debian python3-torch, one thread)
# ROUNDS times, one thread each. Writes base.jsonl, new.jsonl, torch.jsonl, sysinfo.txt and the
# per-round outputs into OUT (default: run-<commit> beside this script), prints summary.md and
# writes it there too. Run it under the measuring lock on a shared machine:
#
#   flock /tmp/ringtrain-measure.lock bash benchmarks/results/cpu/20261204-gemm-v3/run.sh   # ROUNDS=3 REPS=10
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
cd "$root"
BASE=${BASE:-7426db4}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-10}
MODELS=${MODELS:-mlp,cnn}
PY=${PY:-/usr/bin/python3}
OUT=${OUT:-$here/run-$(git rev-parse --short HEAD)}
mkdir -p "$OUT"
tmp=$(mktemp -d)
cleanup() { git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
git worktree add --detach "$tmp/base" "$(git rev-parse "$BASE")" >/dev/null
cp benchmarks/flops/*.go benchmarks/flops/*.s "$tmp/base/benchmarks/flops/"
(cd "$tmp/base" && go build -o "$tmp/flops-base" ./benchmarks/flops)
go build -o "$tmp/flops-new" ./benchmarks/flops
{
	echo "base: $(git rev-parse "$BASE")"
	echo "new:  $(git rev-parse HEAD) + working tree"
	echo "date: $(date -u +%FT%TZ)"
	echo "cpu:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) cores visible)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (before)"
	echo "run:  ROUNDS=$ROUNDS REPS=$REPS MODELS=$MODELS GOMAXPROCS=1 -clock cpu; torch --clock cpu"
} > "$OUT/sysinfo.txt"
: > "$OUT/base.jsonl"; : > "$OUT/new.jsonl"; : > "$OUT/torch.jsonl"
for r in $(seq "$ROUNDS"); do
	GOMAXPROCS=1 "$tmp/flops-base" -models "$MODELS" -reps "$REPS" -json "$tmp/b.jsonl" > "$OUT/base-round$r.txt"
	cat "$tmp/b.jsonl" >> "$OUT/base.jsonl"
	GOMAXPROCS=1 "$tmp/flops-new" -models "$MODELS" -reps "$REPS" -json "$tmp/n.jsonl" > "$OUT/new-round$r.txt"
	cat "$tmp/n.jsonl" >> "$OUT/new.jsonl"
	OMP_NUM_THREADS=1 "$PY" benchmarks/flops/torch_lenet.py --reps "$REPS" --json "$OUT/torch.jsonl" > "$OUT/torch-round$r.txt"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (after)" >> "$OUT/sysinfo.txt"
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.md"
import json, statistics, sys, collections
d = sys.argv[1]
def load(name):
    gemm, peak, step = collections.defaultdict(list), [], collections.defaultdict(list)
    layer = collections.defaultdict(list)
    for r in map(json.loads, open(f"{d}/{name}.jsonl")):
        if r["kind"] == "peak" and r["name"] == "avx512-fma": peak.append(r["gflops"])
        if r["kind"] == "gemm" and "[avx512" in r["name"]: gemm[r["name"].split(" [")[0]].append(r["gflops"])
        if r["kind"] == "step": step[r["model"]].append(r["ms"])
        if r["kind"] == "layer" and r["model"] == "cnn": layer[r["name"]].append(r["ms"])
    return gemm, peak, step, layer
bg, bp, bs, bl = load("base"); ng, np_, ns, nl = load("new")
med = statistics.median
print("GEMM, one thread, AVX-512 kernel, median over rounds of the best of REPS (GFLOP/s, % of the AVX-512 FMA peak measured in the same process)\n")
print("| shape | before | after | after ÷ before |\n|---|---|---|---|")
for k in bg:
    b, n = med(bg[k]), med(ng[k])
    print(f"| {k} | {b:.1f} ({100*b/med(bp):.0f}%) | {n:.1f} ({100*n/med(np_):.0f}%) | {n/b:.2f}× |")
print(f"\npeak (median): before {med(bp):.1f}, after {med(np_):.1f} GFLOP/s\n")
print("cnn layers, batch 64, median over rounds of the best of REPS (ms)\n")
print("| layer | before | after | before ÷ after |\n|---|---|---|---|")
for k in bl:
    if k.split(".")[0] in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2"):
        b, n = med(bl[k]), med(nl[k])
        print(f"| {k} | {b:.3f} | {n:.3f} | {b/n:.2f}× |")
print()
torch = [r["ms"] for r in map(json.loads, open(f"{d}/torch.jsonl"))]
for m in bs:
    print(f"step {m}: before {' '.join('%.3f' % v for v in bs[m])} ms, after {' '.join('%.3f' % v for v in ns[m])} ms: after ÷ before samples/s, median {med(bs[m])/med(ns[m]):.2f}×")
if "cnn" in ns:
    print(f"cnn step vs PyTorch: torch {' '.join('%.3f' % v for v in torch)} ms; go/torch samples/s per round {' '.join('%.2f×' % (t/g) for g, t in zip(ns['cnn'], torch))}, median {med(torch)/med(ns['cnn']):.2f}×")
PYEOF
