#!/usr/bin/env bash
# The README's timeline picture: a 2-rank DDP run of examples/fashion through gorun --timeline,
# the merged trace kept here (ddp-2rank.json) and its last 3 steps drawn (ddp-2rank.png).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benchmarks/results/timeline
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run ./cmd/gorun --standalone --nproc 2 --timeline "$tmp/trace.json" examples/fashion/train.go \
	--synthetic --synthetic-size 4000 --batch 64 --steps 20 --eval=false --progress 0 \
	2>&1 | tee "$out/ddp-2rank.log"
cp "$tmp/trace.json" "$out/ddp-2rank.json"
go run ./cmd/timeline check "$out/ddp-2rank.json"
go run ./cmd/timeline plot -o "$out/ddp-2rank.png" -last-steps 3 "$out/ddp-2rank.json"
