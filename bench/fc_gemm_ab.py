"""The FC layers' GEMMs: refnet's packed kernel against numpy's matmul, and optionally against
other copies of gemm.py (a baseline commit's), timed in turns in one process.

    python -m bench.fc_gemm_ab [--batch 128] [--input-size 227] [--rows "fc6 bwd-filter,fc7 fwd"]
        [--variant NAME=PATH/TO/gemm.py ...] [--clock wall|thread] [--calls 7] [--probes]

Every side takes its turn after the others' (bench/timing.py: a pause first, so that OpenBLAS's
spinning threads have gone to sleep), so outside load falls on all sides alike; the table gives
the median and the fastest call of each, in ms and GFLOP/s, and ratios against numpy. Thread
counts come from the environment (NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS); with one thread each,
`--clock thread` times the CPU time of the calling thread, which outside load disturbs less.

`--probes` adds, for the weight gradients (trans_a, the batch as K), where refnet's time goes:
  no-c-traffic  the same kernel with every row of c written to one row (ldc = 0): the same
                multiply-adds and packing without c's memory traffic
  pack-a        the up-front packing of op(a) alone
  pack-b        the packing of op(b) into each block's scratch alone (the blocks' widths as for
                fc6/fc7; fc8's narrower blocks not imitated)
  numpy-new-c   numpy allocating a fresh c each call (as the bench's peer did until it was given
                a preallocated c: the numpy side here writes into one, as the bench now does)
Results of every variant are checked against numpy before timing.
"""

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time

import numpy as np
from numba import njit, prange

from bench.peers import numpy_gemm
from bench.shapes import alexnet_shapes
from bench.timing import time_interleaved
from refnet.kernels.cpu import gemm as kernels


def load_gemm_variant(name, path):
    """A copy of gemm.py imported inside refnet.kernels.cpu (its relative imports resolve there)."""
    spec = importlib.util.spec_from_file_location(f"refnet.kernels.cpu._variant_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache looks the module up by name
    spec.loader.exec_module(module)
    return module


def _refnet_call(module, c, a, b, g):
    return lambda i: module.gemm(c, a, b, g.trans_a, g.trans_b, 1.0, 0.0)


@njit(parallel=True, cache=True)
def _repack_b_per_block(b, ldb, M, N, K, MB, NB, KC):
    """The packing of op(b) that gemm_strided's blocks do, alone: one slice per block and K slice."""
    m_blocks, n_blocks = (M + MB - 1) // MB, (N + NB - 1) // NB
    for t in prange(m_blocks * n_blocks):
        j0 = (t % n_blocks) * NB
        bp = np.empty(NB * KC, dtype=np.float32)
        for p0 in range(0, K, KC):
            kernels._pack_b(bp, b, ldb, kernels.UNIT_STRIDE, p0, min(KC, K - p0), j0, min(NB, N - j0))


def _probes(g, a, b):
    """name -> (fn(i), floating-point operations credited) for the weight-gradient shapes."""
    one_row = np.empty(g.n + kernels.NR, np.float32)
    ap = np.empty(kernels._a_panels(g.m, g.k) * kernels.KC * kernels.MR, np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)

    def no_c_traffic(i):
        kernels.gemm_strided(one_row, 0, a.reshape(-1), g.m, True, b.reshape(-1), g.n, False,
                             g.m, g.n, g.k, one, zero)

    def pack_a(i):
        kernels._pack_a(ap, a.reshape(-1), 1, g.m, g.m, g.k)

    def pack_b(i):
        _repack_b_per_block(b.reshape(-1), g.n, g.m, g.n, g.k, kernels.MB, kernels.NB, kernels.KC)

    def numpy_new_c(i):
        return numpy_gemm(a, b, g.trans_a, g.trans_b)

    return {"no-c-traffic": (no_c_traffic, g.flops), "pack-a": (pack_a, 0), "pack-b": (pack_b, 0),
            "numpy-new-c": (numpy_new_c, g.flops)}


def measure(g, variants, calls, clock, probes):
    rng = np.random.default_rng(0)
    a = (rng.random(g.a_shape, dtype=np.float32) * 2 - 1)
    b = (rng.random(g.b_shape, dtype=np.float32) * 2 - 1)
    want = numpy_gemm(a, b, g.trans_a, g.trans_b)
    sides = {}
    for name, module in variants.items():
        c = np.full((g.m, g.n), np.nan, np.float32)
        fn = _refnet_call(module, c, a, b, g)
        fn(0)
        err = float(np.max(np.abs(c - want))) / float(np.max(np.abs(want)))
        if not err < 1e-5:
            raise SystemExit(f"{name} on {g.describe()}: largest difference {err:.2e} of numpy's largest value")
        sides[name] = (fn, g.flops)
    c_numpy = np.empty((g.m, g.n), np.float32)
    sides["numpy"] = (lambda i: numpy_gemm(a, b, g.trans_a, g.trans_b, out=c_numpy), g.flops)
    if probes and g.trans_a and not g.trans_b:
        sides.update(_probes(g, a, b))
    names = list(sides)
    timings = time_interleaved([sides[n][0] for n in names], repeat=calls, warmup=1, budget_s=30.0,
                               min_repeat=calls, min_time_s=0.0, clock=clock)
    return {n: (t.samples_ms, sides[n][1], _page_faults(sides[n][0])) for n, t in zip(names, timings)}


def _page_faults(fn):
    """Minor page faults of the process during one call (fresh memory touched, all threads)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn(0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--input-size", type=int, default=227)
    parser.add_argument("--rows", default="", help="comma-separated rows (e.g. 'fc6 bwd-filter'); all nine if empty")
    parser.add_argument("--variant", action="append", default=[], help="NAME=PATH of another gemm.py")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall")
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--probes", action="store_true")
    args = parser.parse_args(argv)

    variants = {"refnet": kernels}
    for spec in args.variant:
        name, path = spec.split("=", 1)
        variants[name] = load_gemm_variant(name, path)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    rows = [(name, g) for name, g in alexnet_shapes(args.batch, args.input_size).gemms() if not wanted or name in wanted]
    print(f"threads: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; clock {args.clock}; "
          f"tile {kernels.MR}x{kernels.NR}, KC {kernels.KC}, MB {kernels.MB}, NB {kernels.NB}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'row':16} {'shape':22} {'side':14} {'median ms':>10} {'min ms':>9} {'GFLOP/s':>8} {'numpy/side':>10} {'faults':>7}")
    for name, g in rows:
        results = measure(g, variants, args.calls, clock, args.probes)
        numpy_median = statistics.median(results["numpy"][0])
        for side, (samples, flops, faults) in results.items():
            median = statistics.median(samples)
            rate = f"{flops / median / 1e6:8.1f}" if flops else f"{'':8}"
            print(f"{name:16} {g.describe():22} {side:14} {median:10.2f} {min(samples):9.2f} {rate} "
                  f"{numpy_median / median:10.2f} {faults:7d}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
