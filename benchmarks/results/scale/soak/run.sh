#!/usr/bin/env bash
# The soak with every AllReduce algorithm forced, over shared memory and QUIC (4 ranks,
# 2 simulated hosts of 2 so that hier has hosts). Run from the repository root:
#   go build -o /tmp/gorun ./cmd/gorun && go build -o /tmp/soak ./benchmarks/soak
#   bash benchmarks/results/scale/soak/run.sh
# (SOAKBIN=dir takes gorun and soak from dir instead of /tmp; ALGOS="a b" runs only those:
# the one-shot and rd+oneshot were added later with ALGOS="oneshot rdoneshot".)
set -u
out=$(dirname "$0")
# "shm": shared memory between the ranks (gorun's default on one host); "quic": every link
# over QUIC (--shm off).
tr=${TRANSPORTS:-shm quic}
bin=${SOAKBIN:-/tmp}
for tr in $tr; do
	flags=(--shm require)
	[ "$tr" = quic ] && flags=(--transport quic --shm off)
	for a in ${ALGOS:-ring rd rhd hier oneshot rdoneshot auto}; do
		"$bin/gorun" --standalone --nproc 4 "${flags[@]}" "$bin/soak" --ops 3000 --seed 7 --algo "$a" --sim-hosts 2 \
			>"$out/soak-$tr-$a.log" 2>&1
		echo "$tr $a exit $?: $(grep -h '^\[0\] {' "$out/soak-$tr-$a.log" | cut -c5- )"
	done
done
