#!/usr/bin/env bash
# One run on a lent NVIDIA GPU (under 8 minutes): the CUDA tests on real hardware, then
# `refnet bench --device cuda` against cuBLAS/cuDNN (through PyTorch, when it is installed).
#
#   bench/gpu_check.sh [RESULTS_DIR]     default: $OUT if set, else bench/results/gpu-<UTC date>
#
# Everything lands in RESULTS_DIR: gpu.txt (nvidia-smi, versions), tests.log + tests.xml,
# bench.log, bench.json, bench.png, bench.md. Each stage has its own time limit, so one that
# hangs cannot eat the other's time; the script exits non-zero if either stage failed.
set -u
cd "$(dirname "$0")/.."

RESULTS=${1:-${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
TEST_LIMIT_S=${TEST_LIMIT_S:-180}
BENCH_LIMIT_S=${BENCH_LIMIT_S:-270}
mkdir -p "$RESULTS"
unset NUMBA_ENABLE_CUDASIM  # real hardware, never the simulator

{
    date -u
    nvidia-smi || echo "nvidia-smi not found"
    "$PY" -c 'import numba, numba_cuda, numpy; from numba import cuda; print("numba", numba.__version__, "numba-cuda", numba_cuda.__version__, "numpy", numpy.__version__); print("cuda available:", cuda.is_available()); cuda.detect()'
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' \
        || echo "torch not installed: the bench's peer columns will say n/a"
} >"$RESULTS/gpu.txt" 2>&1
cat "$RESULTS/gpu.txt"

echo "== CUDA tests on the GPU (limit ${TEST_LIMIT_S}s)"
# (test_compile_ptx is left out: on a GPU every kernel is compiled for the real device anyway)
timeout "$TEST_LIMIT_S" "$PY" -m pytest -q -rs -m "not compile_only" tests/cuda --junitxml="$RESULTS/tests.xml" 2>&1 | tee "$RESULTS/tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== refnet bench --device cuda (limit ${BENCH_LIMIT_S}s)"
timeout "$BENCH_LIMIT_S" "$PY" -m refnet bench --device cuda --batch 128 \
    --json "$RESULTS/bench.json" --png "$RESULTS/bench.png" --md "$RESULTS/bench.md" \
    --note "bench/gpu_check.sh" 2>&1 | tee "$RESULTS/bench.log"
bench_rc=${PIPESTATUS[0]}

echo "tests exit $tests_rc, bench exit $bench_rc (124: over its time limit); results in $RESULTS" | tee "$RESULTS/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
