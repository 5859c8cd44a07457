#!/usr/bin/env bash
# Before/after of benchmarks/flops, side by side in one run: builds this
# command at BASE (default: the commit before internal/sgemm was added, i.e.
# the gorgonia conv/pool/ReLU path on gonum's Sgemm) with -tags baseline and
# at the working tree, then runs the two binaries alternately ROUNDS times,
# one thread each (GOMAXPROCS=1), and prints the best-vs-best and median
# speed-ups per layer and step. Raw JSON lines, the table and the machine's
# description go to OUT.
#
# When MODELS includes cnn and PY (default /usr/bin/python3) imports torch,
# each round also runs torch_lenet.py (the same LeNet step in PyTorch, one
# thread) right after the new binary, and the summary ends with the cnn
# step's samples/s against PyTorch's (best vs best, median of rounds).
#
#   benchmarks/flops/compare.sh                      # ROUNDS=3 REPS=8
#   ROUNDS=5 MODELS=cnn OUT=/tmp/x benchmarks/flops/compare.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
first=$(git log --format=%H --diff-filter=A -- internal/sgemm/sgemm.go | tail -1)
BASE=${BASE:-$first^}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-8}
MODELS=${MODELS:-mlp,mlp-wide,cnn}
PY=${PY:-/usr/bin/python3}
torch=0
if [[ ,$MODELS, == *,cnn,* ]] && "$PY" -c 'import torch' 2>/dev/null; then torch=1; fi
OUT=${OUT:-benchmarks/results/cpu/$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT"
tmp=$(mktemp -d)
cleanup() { git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

git worktree add --detach "$tmp/base" "$(git rev-parse "$BASE")" >/dev/null
mkdir -p "$tmp/base/benchmarks/flops"
cp benchmarks/flops/*.go benchmarks/flops/*.s "$tmp/base/benchmarks/flops/"
(cd "$tmp/base" && go build -tags baseline -o "$tmp/flops-old" ./benchmarks/flops)
go build -o "$tmp/flops-new" ./benchmarks/flops

{
	echo "base: $(git rev-parse "$BASE") ($(git log -1 --format=%s "$BASE" | cut -c1-80))"
	echo "new:  $(git rev-parse HEAD) + working tree"
	echo "date: $(date -u +%FT%TZ)"
	echo "cpu:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) cores visible)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
	echo "run:  ROUNDS=$ROUNDS REPS=$REPS MODELS=$MODELS, GOMAXPROCS=1, old and new alternating"
} > "$OUT/sysinfo.txt"
cat "$OUT/sysinfo.txt"

: > "$OUT/old.jsonl"
: > "$OUT/new.jsonl"
[[ $torch == 1 ]] && : > "$OUT/torch.jsonl"
for r in $(seq "$ROUNDS"); do
	echo "round $r/$ROUNDS: old" >&2
	GOMAXPROCS=1 "$tmp/flops-old" -models "$MODELS" -reps "$REPS" -json "$tmp/o.jsonl" > "$OUT/old-round$r.txt"
	cat "$tmp/o.jsonl" >> "$OUT/old.jsonl"
	echo "round $r/$ROUNDS: new" >&2
	GOMAXPROCS=1 "$tmp/flops-new" -models "$MODELS" -reps "$REPS" -json "$tmp/n.jsonl" > "$OUT/new-round$r.txt"
	cat "$tmp/n.jsonl" >> "$OUT/new.jsonl"
	if [[ $torch == 1 ]]; then
		echo "round $r/$ROUNDS: torch" >&2
		OMP_NUM_THREADS=1 "$PY" benchmarks/flops/torch_lenet.py --reps "$REPS" --json "$OUT/torch.jsonl" > "$OUT/torch-round$r.txt"
	fi
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (after the run)" >> "$OUT/sysinfo.txt"
"$tmp/flops-new" -compare "$OUT/old.jsonl" "$OUT/new.jsonl" | tee "$OUT/compare.txt"
if [[ $torch == 1 ]]; then
	"$PY" - "$OUT/new.jsonl" "$OUT/torch.jsonl" <<'PYEOF' | tee -a "$OUT/compare.txt"
import json, statistics, sys
def steps(path):
    return [r["ms"] for r in map(json.loads, open(path)) if r.get("kind") == "step" and r.get("model") == "cnn"]
go, pt = steps(sys.argv[1]), steps(sys.argv[2])
print("cnn step vs PyTorch (one thread each, batch 64): go %s ms, torch %s ms" % (
    " ".join("%.3f" % v for v in go), " ".join("%.3f" % v for v in pt)))
print("cnn samples/s ratio go/torch: best %.2fx, median of rounds %.2fx, per round %s" % (
    min(pt) / min(go), statistics.median(pt) / statistics.median(go),
    " ".join("%.2fx" % (t / g) for g, t in zip(go, pt))))
PYEOF
fi
