#!/usr/bin/env bash
# gpu-check.sh: the one device run of the GPU backend: every check in one go.
#
#   scripts/build-gpucheck.sh                  # here: builds .devcheck/gpucheck and .devcheck/gorun
#   scripts/gpu-check.sh                       # there, from the repository root (carry .devcheck)
#   DEVICE=emu scripts/gpu-check.sh            # here, without a GPU: a rehearsal (see below)
#
# Steps, each under `timeout`, its output appended to $OUT/gpucheck.log; a failing step
# does not stop the run; a summary ends it and the exit status is 1 if any step failed:
#   sysinfo   uname -a; ldd --version; nvidia-smi -L; where the CUDA libraries are
#   devices   gpucheck devices         (NVML and CUDA agree)
#   gemm      gpucheck gemm            (cuBLAS against a float64 reference)
#   kernels   gpucheck kernels         (each kernel against its Go twin)
#   steps     gpucheck steps --models mlp,mlp-wide,cnn --batch 64 --steps 3
#   bench     gpucheck bench $BENCH_ARGS
#   torch     python3 scripts/gpu_torch.py --config mlp-wide:4096 --config cnn:512 --config mlp:512 --pinned
#   vs-torch  gpucheck vs-torch $OUT/gpucheck.jsonl   (our samples/s over PyTorch's)
#   ddp       gorun --nproc 2 / --nproc 1 gpucheck ddp-worker --device $DEVICE, then compare-params
#             (2 ranks with half the global batch each = 1 rank with all of it, within 1e-5)
#   pipeline  gorun --nproc 2 gpucheck pipe-worker --device $DEVICE and --device cpu, then
#             compare-losses (within 1e-3)
#
# Every JSON line goes into ONE file, $OUT/gpucheck.jsonl: the checks' own records, one
# {"check":"gpu-check-step",...} per step and a final {"check":"gpu-check-summary",...}.
# Files under $OUT (flat, at most 8, as the device tool brings back): gpucheck.jsonl,
# gpucheck.log, torch.jsonl, ddp1.bin, ddp2.bin, pipe-dev.loss, pipe-cpu.loss.
#
# Environment:
#   OUT         output folder (default ./gpucheck-out)
#   DEVICE      cuda (default) or emu: with emu the GPU-only steps (nvidia-smi, devices,
#               bench, torch, vs-torch) are skipped with a message, and gemm, kernels, steps
#               (mlp and cnn only), ddp and pipeline run on the emulator (the kernels' Go
#               twins on the CPU), so the whole script is rehearsed without a GPU
#   BIN         folder of gpucheck and gorun (default .devcheck)
#   BENCH_ARGS  arguments of `gpucheck bench` (default none: its defaults)
#   STEPS_ARGS  arguments of `gpucheck steps` (default --models mlp,mlp-wide,cnn --batch 64 --steps 3;
#               with DEVICE=emu --models mlp,cnn)
#   TORCH_ARGS  arguments of gpu_torch.py (default the three configurations above)
#   DDP_MODEL   model of the ddp check (default mlp); PIPE_MODEL likewise (default mlp)
#   BUDGET_S    seconds the whole run may take (default 290): each step's timeout is cut to
#               what is left, and steps with under 12 s left are not run and count as failed (the summary is
#               always written)
#   GORUN_TRANSPORT  passed to gorun's ranks (default: auto, or quic where /dev/shm is not writable)
#   PYTHON      the python with PyTorch (default python3, else /opt/torch/.venv/bin/python3)
set -u
set -o pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2

OUT="${OUT:-./gpucheck-out}"
DEVICE="${DEVICE:-cuda}"
BIN="${BIN:-.devcheck}"
BENCH_ARGS="${BENCH_ARGS:-}"
[ -n "${STEPS_ARGS:-}" ] && STEPS_ARGS_SET=1
STEPS_ARGS="${STEPS_ARGS:---models mlp,mlp-wide,cnn --batch 64 --steps 3}"
TORCH_ARGS="${TORCH_ARGS:---config mlp-wide:4096 --config cnn:512 --config mlp:512 --pinned}"
DDP_MODEL="${DDP_MODEL:-mlp}"
PIPE_MODEL="${PIPE_MODEL:-mlp}"
BUDGET_S="${BUDGET_S:-290}"
export PYTHONUNBUFFERED=1

case "$DEVICE" in
cuda | emu) ;;
*)
	echo "gpu-check.sh: DEVICE=$DEVICE: want cuda or emu" >&2
	exit 2
	;;
esac
mkdir -p "$OUT" || exit 2
J="$OUT/gpucheck.jsonl"
LOG="$OUT/gpucheck.log"
: >"$J"
: >"$LOG"
GC="$BIN/gpucheck"
GORUN="$BIN/gorun"

t_start=$(date +%s)
passed=()
failed=()
skipped=()

log() { echo "$*" | tee -a "$LOG" >&2; }

# json_str quotes a string for JSON (backslashes, quotes and control characters).
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/}
	printf '"%s"' "$s"
}

record() { # record NAME OK(true|false) RC SECONDS [EXTRA-JSON-FIELDS]
	printf '{"check":"gpu-check-step","step":%s,"ok":%s,"rc":%s,"seconds":%s,"device":%s%s}\n' \
		"$(json_str "$1")" "$2" "$3" "$4" "$(json_str "$DEVICE")" "${5:+,$5}" >>"$J"
}

skip() { # skip NAME REASON
	log "=== $1: skipped: $2"
	skipped+=("$1")
	printf '{"check":"gpu-check-step","step":%s,"ok":true,"skipped":true,"reason":%s,"device":%s}\n' \
		"$(json_str "$1")" "$(json_str "$2")" "$(json_str "$DEVICE")" >>"$J"
}

# step NAME TIMEOUT_S COMMAND...: runs COMMAND with a timeout cut to the time left, its
# stdout and stderr appended to the log (and shown), and records how it went.
step() {
	local name=$1 limit=$2
	shift 2
	local left=$((BUDGET_S - ($(date +%s) - t_start)))
	if ((left < 12)); then
		log "=== $name: FAILED: not run, ${left}s left of BUDGET_S=$BUDGET_S"
		failed+=("$name")
		record "$name" false -1 0 "\"error\":$(json_str "not run: out of time (BUDGET_S=$BUDGET_S)")"
		return 1
	fi
	# timeout's --kill-after adds up to 5 s to a step that ignores SIGTERM.
	((limit > left - 6)) && limit=$((left - 6))
	log "=== $name (timeout ${limit}s): $*"
	local t0 rc
	t0=$(date +%s%N)
	local run=("$@")
	# timeout runs programs: a shell function of this script runs in a child bash (export -f).
	declare -F "$1" >/dev/null && run=(bash -c '"$@"' _ "$@")
	timeout --kill-after=5 "$limit" "${run[@]}" 2>&1 | tee -a "$LOG"
	rc=${PIPESTATUS[0]}
	local secs
	# Integer nanoseconds and awk: the GPU machine has no bc.
	secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
	if ((rc == 0)); then
		passed+=("$name")
		record "$name" true "$rc" "$secs"
		log "=== $name: ok (${secs}s)"
	else
		failed+=("$name")
		local why=""
		((rc == 124 || rc == 137)) && why=$(json_str "timed out after ${limit}s") && why="\"error\":$why"
		record "$name" false "$rc" "$secs" "$why"
		log "=== $name: FAILED (exit status $rc, ${secs}s)"
	fi
	return "$rc"
}

sysinfo() {
	uname -a
	ldd --version 2>&1 | head -1
	nproc
	if [ "$DEVICE" = cuda ]; then
		nvidia-smi -L || return 1
		nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv || true
	else
		echo "nvidia-smi: skipped (DEVICE=$DEVICE)"
	fi
	echo "CUDA library folders:"
	ls -d /usr/local/nvidia/lib64 /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null || echo "  none of the usual ones"
	df -h /dev/shm 2>/dev/null | tail -1
	ls -l "$GC" "$GORUN" || return 1
}

pick_python() {
	if [ -n "${PYTHON:-}" ]; then
		echo "$PYTHON"
	elif python3 -c 'import torch' 2>/dev/null; then
		echo python3
	elif [ -x /opt/torch/.venv/bin/python3 ]; then
		echo /opt/torch/.venv/bin/python3
	else
		echo python3
	fi
}

torch_step() {
	local py
	py=$(pick_python)
	# shellcheck disable=SC2086 # TORCH_ARGS is a list of arguments
	"$py" scripts/gpu_torch.py $TORCH_ARGS --out "$OUT/torch.jsonl"
}

# gorun's ranks link over shared memory on one host (GORUN_TRANSPORT=auto): without a
# writable /dev/shm, use QUIC rather than fail.
if [ -z "${GORUN_TRANSPORT:-}" ] && { [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; }; then
	log "gpu-check.sh: /dev/shm is not writable: GORUN_TRANSPORT=quic"
	export GORUN_TRANSPORT=quic
fi
export DEVICE OUT BIN GC GORUN TORCH_ARGS
export -f sysinfo pick_python torch_step
log "gpu-check.sh: DEVICE=$DEVICE OUT=$OUT BIN=$BIN BUDGET_S=$BUDGET_S, started $(date -u +%FT%TZ)"
for f in "$GC" "$GORUN"; do # in case the copy lost the execute bits
	[ -f "$f" ] && [ ! -x "$f" ] && chmod +x "$f"
done
if [ ! -x "$GC" ] || [ ! -x "$GORUN" ]; then
	log "gpu-check.sh: $GC or $GORUN missing: run scripts/build-gpucheck.sh first (and carry $BIN)"
fi

step sysinfo 30 sysinfo

gpu_only() { # gpu_only NAME TIMEOUT COMMAND...: a step that needs the GPU
	if [ "$DEVICE" != cuda ]; then
		skip "$1" "needs the GPU (DEVICE=$DEVICE)"
		return 0
	fi
	step "$@"
}

# gemm, kernels and steps take --device: with DEVICE=emu they run on the emulator (a
# rehearsal of their plumbing; kernels then compares the emulator with itself).
devflag=()
[ "$DEVICE" = emu ] && devflag=(--device emu)
[ "$DEVICE" = emu ] && [ -z "${STEPS_ARGS_SET:-}" ] && STEPS_ARGS="--models mlp,cnn --batch 64 --steps 3"

gpu_only devices 60 "$GC" --out "$J" devices
step gemm 90 "$GC" --out "$J" gemm "${devflag[@]}"
step kernels 90 "$GC" --out "$J" kernels "${devflag[@]}"
# shellcheck disable=SC2086 # *_ARGS are lists of arguments
step steps 120 "$GC" --out "$J" steps "${devflag[@]}" $STEPS_ARGS
# shellcheck disable=SC2086
gpu_only bench 150 "$GC" --out "$J" bench $BENCH_ARGS
if [ "$DEVICE" = cuda ]; then
	rm -f "$OUT/torch.jsonl"
	step torch 150 torch_step
	[ -s "$OUT/torch.jsonl" ] && cat "$OUT/torch.jsonl" >>"$J"
	# Our samples/s over PyTorch's (bench and torch records of this run).
	step vs-torch 20 "$GC" --out "$J" vs-torch "$J"
else
	skip torch "needs the GPU (DEVICE=$DEVICE)"
	skip vs-torch "needs the GPU (DEVICE=$DEVICE)"
fi

# DDP equivalence: 2 ranks on half the global batch each against 1 rank on all of it.
rm -f "$OUT/ddp1.bin" "$OUT/ddp2.bin"
step ddp-2ranks 90 "$GORUN" --nproc 2 "$GC" --out "$J" ddp-worker --model "$DDP_MODEL" --device "$DEVICE" --params-out "$OUT/ddp2.bin"
step ddp-1rank 90 "$GORUN" --nproc 1 "$GC" --out "$J" ddp-worker --model "$DDP_MODEL" --device "$DEVICE" --params-out "$OUT/ddp1.bin"
step ddp-compare 30 "$GC" --out "$J" compare-params "$OUT/ddp1.bin" "$OUT/ddp2.bin" --tol 1e-5

# Pipeline: 2 stages on the device against 2 stages on the CPU (gorgonia).
rm -f "$OUT/pipe-dev.loss" "$OUT/pipe-cpu.loss"
step pipe-dev 90 "$GORUN" --nproc 2 "$GC" --out "$J" pipe-worker --model "$PIPE_MODEL" --device "$DEVICE" --loss-out "$OUT/pipe-dev.loss"
step pipe-cpu 90 "$GORUN" --nproc 2 "$GC" --out "$J" pipe-worker --model "$PIPE_MODEL" --device cpu --loss-out "$OUT/pipe-cpu.loss"
step pipe-compare 30 "$GC" --out "$J" compare-losses "$OUT/pipe-dev.loss" "$OUT/pipe-cpu.loss" --tol 1e-3

# The fashion example as users run it: 2 ranks through gorun, --device auto, one epoch on
# the embedded data. Its JSON epoch report must say it computed on the GPU.
example_step() {
	local tmp rc
	tmp=$(mktemp)
	"$GORUN" --nproc 2 "$BIN/fashion" --device auto --epochs 1 --json >"$tmp"
	rc=$?
	cat "$tmp"
	# gorun prefixes each line with its rank: keep rank 0's JSON report.
	sed -n 's/^\[0\] {/{"check":"example-fashion","ok":true,/p' "$tmp" >>"$J"
	rm -f "$tmp"
	((rc == 0)) || return "$rc"
}
export -f example_step
export GORUN BIN J
if [ "$DEVICE" = cuda ] && [ -s "$BIN/fashion.gz" ]; then
	gunzip -kf "$BIN/fashion.gz" && chmod +x "$BIN/fashion"
	step example-fashion 120 example_step
	# The auto placement must be the GPU: the report names where it computed.
	if grep -q '"check":"example-fashion".*"device":"cuda:' "$J"; then
		record example-placement true 0 0
	else
		failed+=(example-placement)
		record example-placement false 1 0 "\"error\":\"the fashion example did not report computing on cuda\""
	fi
else
	skip example-fashion "needs the GPU and $BIN/fashion.gz (DEVICE=$DEVICE)"
fi

# gpu/cuda's own tests (they skip without a driver; here they run).
if [ "$DEVICE" = cuda ] && [ -s "$BIN/cuda.test.gz" ]; then
	gunzip -kf "$BIN/cuda.test.gz" && chmod +x "$BIN/cuda.test"
	step cuda-bindings 120 "$BIN/cuda.test" -test.v -test.count=1
else
	skip cuda-bindings "needs the GPU and $BIN/cuda.test.gz (DEVICE=$DEVICE)"
fi

# Records of checks that reported ok=false without failing their step (none should).
bad_records=$(grep -E '"ok": *false' "$J" 2>/dev/null | grep -vc '"gpu-check-step"')
total=$(($(date +%s) - t_start))
list() { # list NAMES... → a JSON array of strings
	local out="" n
	for n in "$@"; do out+="${out:+,}$(json_str "$n")"; done
	printf '[%s]' "$out"
}
ok=true
((${#failed[@]} > 0 || bad_records > 0)) && ok=false
printf '{"check":"gpu-check-summary","ok":%s,"device":%s,"passed":%s,"failed":%s,"skipped":%s,"records_not_ok":%d,"seconds":%d}\n' \
	"$ok" "$(json_str "$DEVICE")" "$(list "${passed[@]}")" "$(list "${failed[@]}")" "$(list "${skipped[@]}")" "$bad_records" "$total" >>"$J"
log ""
log "=== summary (DEVICE=$DEVICE, ${total}s)"
log "passed:  ${passed[*]:-none}"
log "failed:  ${failed[*]:-none}"
log "skipped: ${skipped[*]:-none}"
log "records with \"ok\":false in $J: $bad_records"
log "files:   $(cd "$OUT" && ls | tr '\n' ' ')"
[ "$ok" = true ]
