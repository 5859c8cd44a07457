#!/usr/bin/env bash
# Cost of --timeline on the 2-rank fashion mlp DDP run: the same run with and without it,
# interleaved in pairs whose order alternates (off on, on off, ...) so that both modes see the
# same machine load. Prints one JSON line per run: the mode, the pair, the CPU seconds of the
# whole job (gorun and both ranks: user + system, as bash's time reports for gorun and the
# children it waited for) and rank 0's epoch report (samples_per_s is wall-clock).
# Usage: benchmarks/results/timeline/overhead.sh [PAIRS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
pairs=${1:-5}
steps=${2:-150}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/gorun" ./cmd/gorun
go build -o "$tmp/fashion" ./examples/fashion
args=(--synthetic --synthetic-size 20000 --batch 64 --steps "$steps" --eval=false --progress 0 --json)
TIMEFORMAT='%U %S'
for i in $(seq "$pairs"); do
	order="off on"
	[ $((i % 2)) = 0 ] && order="on off"
	for mode in $order; do
		tl=()
		[ "$mode" = on ] && tl=(--timeline "$tmp/trace.json")
		{ time "$tmp/gorun" --standalone --nproc 2 "${tl[@]}" "$tmp/fashion" "${args[@]}" >"$tmp/out" 2>/dev/null; } 2>"$tmp/time"
		line=$(grep '^\[0\] {' "$tmp/out" | sed 's/^\[0\] //')
		read -r user sys <"$tmp/time"
		echo "{\"mode\":\"$mode\",\"pair\":$i,\"cpu_s\":$(awk "BEGIN{print $user + $sys}"),\"report\":$line}"
	done
done
