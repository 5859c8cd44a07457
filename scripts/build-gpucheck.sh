#!/usr/bin/env bash
# build-gpucheck.sh: build the binaries the device check carries to the GPU machine.
#
#   scripts/build-gpucheck.sh [DIR]      (default DIR: .devcheck, git-ignored)
#
# Builds DIR/gpucheck (./cmd/gpucheck) and DIR/gorun (./cmd/gorun), plus the compressed
# DIR/fashion.gz (the fashion example, run as users run it) and DIR/cuda.test.gz (gpu/cuda's
# tests, which skip here and run there), for linux/amd64 with
# CGO_ENABLED=0 -trimpath -ldflags '-s -w' (CUDA is loaded at run time through purego, so
# no CUDA is needed here), prints their sizes and fails when together they exceed
# MAX_MIB (default 40): the working tree plus the carried folder must stay under the
# device tool's 64 MiB. Then run scripts/gpu-check.sh there (see its header).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dir="${1:-.devcheck}"
max_mib="${MAX_MIB:-40}"
mkdir -p "$dir"

# The GPU machine is x86-64 Linux whatever this machine is.
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
for cmd in gpucheck gorun; do
	go build -trimpath -ldflags '-s -w' -o "$dir/$cmd" "./cmd/$cmd"
done
rm -rf "$dir/cudahelper" # an earlier session's separate bundle: its tests now travel as cuda.test.gz
go build -trimpath -ldflags '-s -w' -o "$dir/fashion" ./examples/fashion
go test -c -trimpath -ldflags '-s -w' -o "$dir/cuda.test" ./gpu/cuda
gzip -9 -f "$dir/fashion" "$dir/cuda.test"

total=0
for f in "$dir/gpucheck" "$dir/gorun" "$dir/fashion.gz" "$dir/cuda.test.gz"; do
	b=$(stat -c %s "$f")
	total=$((total + b))
	printf '%-24s %6.1f MiB\n' "$f" "$(echo "$b / 1048576" | bc -l)"
done
printf '%-24s %6.1f MiB (limit %d MiB)\n' "total" "$(echo "$total / 1048576" | bc -l)" "$max_mib"
if ((total > max_mib * 1048576)); then
	echo "build-gpucheck.sh: the binaries take more than $max_mib MiB: the device tool carries 64 MiB in all" >&2
	exit 1
fi
# What travels: tracked and untracked-not-ignored files, plus the whole carried folder
# (which may hold more than these two binaries).
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb "$dir" | cut -f1)
printf '%-24s %6.1f MiB, %s: %.1f MiB; together %.1f MiB of 64\n' "working tree" "$(echo "$tree / 1048576" | bc -l)" \
	"$dir" "$(echo "$carried / 1048576" | bc -l)" "$(echo "($tree + $carried) / 1048576" | bc -l)"
if ((tree + carried > 60 * 1048576)); then
	echo "build-gpucheck.sh: the working tree and $dir come near the device tool's 64 MiB" >&2
	exit 1
fi
