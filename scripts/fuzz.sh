#!/usr/bin/env bash
# Runs every fuzz target of the module for a set time each and reports, per target, PASS or
# FAIL and its time, then the total.
#
#   scripts/fuzz.sh                       # every target, 20 s each
#   FUZZTIME=2m scripts/fuzz.sh ./collective/...
#   FUZZTIME=500x FUZZPARALLEL=1 scripts/fuzz.sh
#
# Arguments: package patterns (default ./...). Environment: FUZZTIME (go test -fuzztime: a
# duration or Nx; default 20s), FUZZPARALLEL (go test -parallel: fuzzing workers; default
# GOMAXPROCS), FUZZ_TIMEOUT (seconds one target may take including its build before it
# counts as a hang; default 600), OUT (a file that also receives the report).
#
# A failing target leaves its crasher where go test puts it
# (<package>/testdata/fuzz/<Target>/<hash>); the report names it. Exit status: 1 if any
# target failed, else 0.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-20s}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-600}
par=()
[ -n "${FUZZPARALLEL:-}" ] && par=(-parallel "$FUZZPARALLEL")
patterns=("$@")
[ ${#patterns[@]} -eq 0 ] && patterns=(./...)

if [ -n "${OUT:-}" ]; then
	exec > >(tee "$OUT") 2>&1
fi

start=$SECONDS
echo "fuzz: $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), fuzztime $FUZZTIME per target, $(nproc) cores${FUZZPARALLEL:+, parallel $FUZZPARALLEL}"

# Packages whose test files declare a fuzz target (a cheap grep first, so that only those
# packages' test binaries are built to list the targets).
mapfile -t dirs < <(go list -f '{{.Dir}}' "${patterns[@]}" 2>/dev/null | while read -r d; do
	grep -lqs '^func Fuzz' "$d"/*_test.go && echo "$d"
done)
if [ ${#dirs[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets in ${patterns[*]}"
	exit 0
fi

pass=0 fail=0 n=0
failed=()
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for d in "${dirs[@]}"; do
	rel=./${d#"$PWD"/}
	[ "$d" = "$PWD" ] && rel=.
	if ! targets=$(go test -list '^Fuzz' "$rel" 2>&1); then
		echo "FAIL  $rel  (listing the targets: $(echo "$targets" | tail -3 | tr '\n' ' '))"
		fail=$((fail + 1)); failed+=("$rel (list)")
		continue
	fi
	for t in $(echo "$targets" | grep -E '^Fuzz[A-Za-z0-9_]*$'); do
		n=$((n + 1))
		t0=$SECONDS
		before=$(ls "$d/testdata/fuzz/$t" 2>/dev/null | wc -l)
		timeout --kill-after=10 "$FUZZ_TIMEOUT" go test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "${par[@]}" "$rel" >"$tmp" 2>&1
		rc=$?
		dt=$((SECONDS - t0))
		execs=$(grep -oE 'execs: [0-9]+' "$tmp" | tail -1 | grep -oE '[0-9]+')
		if [ $rc -eq 0 ]; then
			pass=$((pass + 1))
			printf 'PASS  %-45s %-32s %4ds  %s execs\n' "$rel" "$t" "$dt" "${execs:-?}"
		else
			fail=$((fail + 1)); failed+=("$rel $t")
			why="exit $rc"
			if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
				why="no end within ${FUZZ_TIMEOUT}s (hang?)"
			elif grep -qE -- '--- FAIL: Fuzz|Failing input written to|panic:' "$tmp"; then
				why="exit $rc: the fuzzer found a failing input"
			elif grep -qE '\[build failed\]|^vet: |\[setup failed\]' "$tmp"; then
				why="exit $rc: build or vet failed (not a fuzz finding)"
			fi
			printf 'FAIL  %-45s %-32s %4ds  %s\n' "$rel" "$t" "$dt" "$why"
			after=$(ls "$d/testdata/fuzz/$t" 2>/dev/null | wc -l)
			[ "$after" -gt "$before" ] && echo "      new crasher(s) in $rel/testdata/fuzz/$t/ (rerun: go test -run '$t/<name>' $rel)"
			sed 's/^/      | /' "$tmp" | tail -25
		fi
	done
done
total=$((SECONDS - start))
echo "fuzz: $n targets, $pass passed, $fail failed, total $((total / 60))m$((total % 60))s (fuzztime $FUZZTIME each)"
for f in "${failed[@]}"; do echo "fuzz: FAILED $f"; done
[ $fail -eq 0 ]
