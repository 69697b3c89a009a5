#!/usr/bin/env bash
# `make gpu-check`: one run on a GPU machine with no network (like the lent ones), in under 8
# minutes. It installs nothing: python3 there must already have numba, numba-cuda, numpy, h5py,
# pillow, tqdm (torch for the peer columns), and compute-sanitizer and ncu must be on PATH (or
# under /usr/local/cuda*/bin, /opt/nvidia). refnet runs from this working tree (PYTHONPATH).
#
#   bench/gpu_check.sh [RESULTS_DIR]     default: $OUT if set, else bench/results/gpu-<UTC date>
#
# Stages, each with its own time limit (seconds, overridable) so one that hangs cannot eat the
# others' time; a missing tool skips its stage with a note:
#   gpu.txt                        nvidia-smi, versions, tool paths
#   sass.*     (background, 240)   `refnet sass` on the CPU meanwhile: the static table to compare
#   tests.*                 (110)  the CUDA tests on the device (not the compile-only ones)
#   racecheck.log, memcheck.log (85 each)  compute-sanitizer over one launch of every kernel
#                                  (bench/gpu_sanitize.py): shared-memory races, out-of-bounds
#   bench.*                 (130)  `refnet bench --device cuda --repeat 5` beside cuDNN/cuBLAS, TF32 off
#   ncu.csv, ncu.md          (60)  Nsight Compute counters of conv2 and fc6 forward
#                                  (bench/gpu_profile.py) beside the static prediction
#   summary.txt                    every stage's exit status (124: over its time limit)
# Exit status: non-zero if any stage that ran failed.
set -u
cd "$(dirname "$0")/.."

RESULTS=${1:-${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}}
PY=${PYTHON:-python3}
TEST_LIMIT_S=${TEST_LIMIT_S:-110}
SANITIZE_LIMIT_S=${SANITIZE_LIMIT_S:-85}
BENCH_LIMIT_S=${BENCH_LIMIT_S:-130}
NCU_LIMIT_S=${NCU_LIMIT_S:-60}
SASS_LIMIT_S=${SASS_LIMIT_S:-240}
mkdir -p "$RESULTS"
unset NUMBA_ENABLE_CUDASIM  # real hardware, never the simulator
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
declare -A status

tool() {  # the path of an NVIDIA tool: PATH first, then the usual install folders
    command -v "$1" 2>/dev/null && return
    ls -d /usr/local/cuda*/bin/"$1" /opt/nvidia/nsight-compute/*/"$1" /usr/local/cuda*/compute-sanitizer/"$1" 2>/dev/null | sort -V | tail -1
}
SANITIZER=$(tool compute-sanitizer)
NCU=$(tool ncu)

{
    date -u
    nvidia-smi || echo "nvidia-smi not found"
    "$PY" -c 'import numba, numba_cuda, numpy; from numba import cuda; print("numba", numba.__version__, "numba-cuda", numba_cuda.__version__, "numpy", numpy.__version__); print("cuda available:", cuda.is_available()); cuda.detect()'
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' \
        || echo "torch not installed: the bench's peer columns will say n/a"
    echo "compute-sanitizer: ${SANITIZER:-not found}"
    echo "ncu: ${NCU:-not found}"
} >"$RESULTS/gpu.txt" 2>&1
cat "$RESULTS/gpu.txt"

stage() {  # stage NAME LIMIT_S COMMAND...: run with a time limit, output to NAME.log and the screen
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" 2>&1 | tee "$RESULTS/$name.log"
    status[$name]=${PIPESTATUS[0]}
}

# the static table needs only the CPU: it runs while the GPU stages do
timeout "$SASS_LIMIT_S" "$PY" -m refnet sass --json "$RESULTS/sass.json" --md "$RESULTS/sass.md" >"$RESULTS/sass.log" 2>&1 &
sass_pid=$!

stage tests "$TEST_LIMIT_S" "$PY" -m pytest -q -rs -m "not compile_only" tests/cuda --junitxml="$RESULTS/tests.xml"

if [ -n "$SANITIZER" ]; then
    for check in racecheck memcheck; do
        stage "$check" "$SANITIZE_LIMIT_S" "$SANITIZER" --tool "$check" --error-exitcode 3 --print-limit 20 \
            "$PY" bench/gpu_sanitize.py
    done
else
    echo "compute-sanitizer not found: racecheck and memcheck skipped" | tee "$RESULTS/racecheck.log" "$RESULTS/memcheck.log"
fi

stage bench "$BENCH_LIMIT_S" "$PY" -m refnet bench --device cuda --batch 128 --repeat 5 \
    --json "$RESULTS/bench.json" --png "$RESULTS/bench.png" --md "$RESULTS/bench.md" --note "bench/gpu_check.sh"

if [ -n "$NCU" ]; then
    metrics=$("$PY" -c 'from bench.ncu_compare import METRICS; print(",".join(METRICS))')
    echo "== ncu (limit ${NCU_LIMIT_S}s)"
    timeout "$NCU_LIMIT_S" "$NCU" --kernel-name regex:tiled_kernel --metrics "$metrics" --csv --print-units base \
        "$PY" bench/gpu_profile.py >"$RESULTS/ncu.csv" 2>"$RESULTS/ncu.log"
    status[ncu]=$?
    wait "$sass_pid"
    status[sass]=$?
    static="$RESULTS/sass.json"
    [ "${status[sass]}" -eq 0 ] || static=bench/results/gpu-static-before.json  # committed, when refnet sass could not run here
    echo "static prediction from $static" | tee -a "$RESULTS/ncu.log"
    "$PY" bench/ncu_compare.py "$RESULTS/ncu.csv" "$static" --md "$RESULTS/ncu.md" 2>&1 | tee -a "$RESULTS/ncu.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status[ncu]=1
else
    echo "ncu not found: counters skipped" | tee "$RESULTS/ncu.log"
    wait "$sass_pid"
    status[sass]=$?
fi

{
    for name in tests racecheck memcheck bench ncu sass; do
        [ -n "${status[$name]+x}" ] && echo "$name exit ${status[$name]}"
    done
    echo "total $(($(date +%s) - started)) s; results in $RESULTS (124: a stage over its time limit)"
} | tee "$RESULTS/summary.txt"
for name in "${!status[@]}"; do
    [ "${status[$name]}" -eq 0 ] || exit 1
done
