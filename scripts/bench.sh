#!/usr/bin/env bash
# bench.sh: produce ringtrain's scaling and AllReduce report in one command.
#
#   scripts/bench.sh [--quick] [--out DIR] [any benchmarks/scaling flag...]
#
# Builds benchmarks/scaling, which builds gorun, the trainer and the AllReduce benchmark
# once and runs every configuration through gorun on synthetic data. Writes results.json,
# report.md and SVG/PNG plots to benchmarks/results/ (or --out DIR).
#
# Budgets on the 2-core development machine: the full report in under 10 minutes,
# --quick (one repetition, fewer steps, smaller sweep) in under 2. The full settings
# below were sized for that machine; on a bigger one add e.g. --nproc 1,2,4,8.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

for a in "$@"; do
	case "$a" in
	-h | --help)
		sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	esac
done

# Report defaults; any flag given on the command line overrides them (the flag package
# keeps the last value). --quick changes scaling's own defaults (repetitions, steps...).
defaults=(--nproc 1,2,4 --out "$repo/benchmarks/results")

bin="$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-bench.XXXXXX")"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/scaling" ./benchmarks/scaling
start=$(date +%s)
status=0
"$bin/scaling" "${defaults[@]}" "$@" || status=$?
echo "bench.sh: finished in $(( $(date +%s) - start )) s (exit status $status)" >&2
exit "$status"
