#!/usr/bin/env bash
# Throughput of the 2-rank fashion mlp DDP run with and without --timeline, interleaved in
# pairs whose order alternates (off on, on off, ...) so that both modes see the same machine
# load. Prints one JSON line per run: the mode, the pair and rank 0's epoch report. Usage: benchmarks/results/timeline/overhead.sh [PAIRS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
pairs=${1:-5}
steps=${2:-150}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/gorun" ./cmd/gorun
go build -o "$tmp/fashion" ./examples/fashion
args=(--synthetic --synthetic-size 20000 --batch 64 --steps "$steps" --eval=false --progress 0 --json)
for i in $(seq "$pairs"); do
	order="off on"
	[ $((i % 2)) = 0 ] && order="on off"
	for mode in $order; do
		tl=()
		[ "$mode" = on ] && tl=(--timeline "$tmp/trace.json")
		line=$("$tmp/gorun" --standalone --nproc 2 "${tl[@]}" "$tmp/fashion" "${args[@]}" 2>/dev/null | grep '^\[0\] {' | sed 's/^\[0\] //')
		echo "{\"mode\":\"$mode\",\"pair\":$i,\"report\":$line}"
	done
done
