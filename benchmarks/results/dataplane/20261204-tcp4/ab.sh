#!/usr/bin/env bash
# A/B of builds (or env settings) side by side: each round runs one gorun job per variant in
# turn, so a busy machine slows them alike. A variant is NAME=DIR[,VAR=VALUE...], DIR holding
# gorun and allreduce built from one commit; ARGS=a+b (a VAR of that list) adds driver flags
# "a b" to that variant only. Raw JSON lines (rank 0) to stdout, each with the
# round and the variant added; the driver's flags come after --.
#
#   bash ab.sh 3 base=/tmp/bin-base new=/tmp/bin-new -- --min 64MiB --max 64MiB --iters 8 --baseline --algo ring
#
# RANKS (default 4), TRANSPORT (default tcp), THREADS (default 1) pick the job.
set -euo pipefail
ROUNDS=$1
shift
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
RANKS=${RANKS:-4}
TRANSPORT=${TRANSPORT:-tcp}
THREADS=${THREADS:-1}
echo "# $(date -u +%FT%TZ) $(nproc) cores, uptime: $(uptime), ranks: $RANKS, transport: $TRANSPORT, variants: ${variants[*]}, args: $*" >&2
for round in $(seq "$ROUNDS"); do
	for v in "${variants[@]}"; do
		name=${v%%=*}
		rest=${v#*=}
		dir=${rest%%,*}
		envs=()
		extra=()
		[ "$rest" != "$dir" ] && IFS=, read -ra envs <<<"${rest#*,}"
		for i in "${!envs[@]}"; do
			case ${envs[$i]} in ARGS=*) IFS=+ read -ra extra <<<"${envs[$i]#ARGS=}"; unset "envs[$i]" ;; esac
		done
		env "${envs[@]}" "$dir/gorun" --nproc "$RANKS" --threads-per-rank "$THREADS" --shm off --transport "$TRANSPORT" \
			"$dir/allreduce" -- --json "$@" "${extra[@]}" 2>/dev/null |
			sed -n 's/^\[0\] {/{"round":'"$round"',"variant":"'"$name"'",/p'
	done
done
echo "# end $(date -u +%FT%TZ) uptime: $(uptime)" >&2
