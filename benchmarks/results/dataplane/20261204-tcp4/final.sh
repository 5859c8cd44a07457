#!/usr/bin/env bash
# Final rounds (under the measure lock): commit 41ac3c9 of branch tcp4, tcp only, Gloo beside it.
set -u
out=/work/wt/tcp4/benchmarks/results/dataplane/20261204-tcp4
{ echo "# final.sh start $(date -u +%FT%TZ) commit 41ac3c9"; uptime; } > $out/final-run.log
TRANSPORTS=tcp bash /tmp/tcp4/final/benchmarks/allreduce/sweep.sh 3 -- --min 64MiB --max 64MiB --iters 5 --warmup 1 --baseline --exchange-write 4MiB --algo ring,auto > $out/final-raw.jsonl 2>> $out/final-run.log
{ echo "# sweep end $(date -u +%FT%TZ)"; uptime; } >> $out/final-run.log
# before/after: the branch's starting point (3de2488: 7426db4 + job_cpu_us) against 41ac3c9, 4 and 2 ranks
cd $out && bash ab.sh 3 before=/tmp/tcp4/bin-base after=/tmp/tcp4/bin-cur -- --min 64MiB --max 64MiB --iters 5 --warmup 1 --baseline --algo ring,auto > final-ab4.jsonl 2>> final-run.log
RANKS=2 bash ab.sh 3 before=/tmp/tcp4/bin-base after=/tmp/tcp4/bin-cur -- --min 64MiB --max 64MiB --iters 5 --warmup 1 --baseline --algo ring,auto > final-ab2.jsonl 2>> final-run.log
{ echo "# final.sh end $(date -u +%FT%TZ)"; uptime; } >> $out/final-run.log
