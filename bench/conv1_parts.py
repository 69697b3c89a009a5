"""conv1 (3 channels, 11x11, stride 4) on the CPU: where its time goes, and its paths side by side
with PyTorch CPU, in one process, every variant taking its turn in each round.

    python -m bench.conv1_parts --input-size 227 --batch 32 --repeat 7

Prints, per variant, the median over the rounds of the wall time and of the process's CPU time (all
its threads; under a shared machine's load the CPU time moves less than the wall time):
- im2col's forward cut into its stages on one thread (patches, GEMM, bias + write-back), CPU time
  of the thread summed over the chunks of the batch;
- the im2col and gather paths' forward and weight gradient (dx not computed: conv1's input needs
  none), with 1 and 2 Numba threads;
- torch.nn.functional.conv2d and aten's convolution_backward (weight and bias only) with
  torch.set_num_threads(1 and 2).
Each call starts 0.2 s after the previous one, as in `refnet bench`.
"""

import argparse
import time

import numpy as np

from bench.timing import time_in_turns
from refnet.kernels.cpu import conv2d as kernels
from refnet.kernels.cpu.gemm import gemm_nt_serial, padded_pitch

STRIDE, PAD, K, R = 4, 0, 96, 11


def _im2col_stages(y, x, w, b):
    """{stage: thread CPU seconds} of one im2col forward, run chunk by chunk on this thread."""
    N, C = x.shape[0], x.shape[1]
    P, Q = y.shape[2], y.shape[3]
    PQ, D = P * Q, C * R * R
    nc, chunks = kernels._chunking(N, PQ)
    d_pitch, l_pitch = padded_pitch(D), padded_pitch(nc * PQ)
    w_rows = np.empty(K * d_pitch, np.float32)
    kernels._weight_rows(w_rows, d_pitch, w.reshape(K, D))
    patches = np.empty(nc * PQ * d_pitch, np.float32)
    y_cols = np.empty(K * l_pitch, np.float32)
    spent = {"patches": 0.0, "GEMM": 0.0, "bias + write-back": 0.0}
    for t in range(chunks):
        n0 = t * nc
        m = min(nc, N - n0)
        t0 = time.thread_time()
        kernels._patches(patches, d_pitch, x, n0, m, 0, C, R, R, STRIDE, PAD, P, Q)
        t1 = time.thread_time()
        gemm_nt_serial(y_cols, l_pitch, w_rows, d_pitch, patches, d_pitch, K, m * PQ, d_pitch,
                       np.float32(1.0), np.float32(0.0))
        t2 = time.thread_time()
        kernels._output_from_columns(y, y_cols, l_pitch, b, n0, m, 0, K)
        t3 = time.thread_time()
        spent["patches"] += t1 - t0
        spent["GEMM"] += t2 - t1
        spent["bias + write-back"] += t3 - t2
    return spent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=227)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--paths", default="im2col,gather", help="refnet paths to time (im2col, gather)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    N, H = args.batch, args.input_size
    P = (H - R) // STRIDE + 1
    x = rng.uniform(-1, 1, (N, 3, H, H)).astype(np.float32)
    w = rng.uniform(-0.05, 0.05, (K, 3, R, R)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, K).astype(np.float32)
    dy = rng.uniform(-1, 1, (N, K, P, P)).astype(np.float32)
    y, dw, db = np.empty((N, K, P, P), np.float32), np.empty_like(w), np.empty_like(b)
    paths = {
        "im2col": (kernels.conv2d_forward_im2col, kernels.conv2d_backward_im2col),
        "gather": (getattr(kernels, "conv2d_forward_gather", None), getattr(kernels, "conv2d_backward_gather", None)),
    }
    variants = {"im2col stages, 1 thread": None}
    for name in args.paths.split(","):
        forward, backward = paths[name]
        for threads in (1, 2):
            variants[f"{name} fwd, {threads} thr"] = (threads, lambda f=forward: f(y, x, w, b, STRIDE, PAD, 1))
            variants[f"{name} dw+db, {threads} thr"] = (
                threads, lambda g=backward: g(None, dw, db, x, w, dy, STRIDE, PAD, 1))
    if not args.no_torch:
        import torch

        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        for threads in (1, 2):
            variants[f"torch fwd, {threads} thr"] = (
                -threads, lambda: torch.nn.functional.conv2d(xt, wt, bt, STRIDE, PAD))
            variants[f"torch dw+db, {threads} thr"] = (-threads, lambda: torch.ops.aten.convolution_backward(
                dyt, xt, wt, [K], [STRIDE] * 2, [PAD] * 2, [1, 1], False, [0, 0], 1, [False, True, True]))

    # Warm-up (compiles), and the paths checked against each other.
    results = {}
    for name in args.paths.split(","):
        forward, backward = paths[name]
        forward(y, x, w, b, STRIDE, PAD, 1)
        backward(None, dw, db, x, w, dy, STRIDE, PAD, 1)
        results[name] = (y.copy(), dw.copy(), db.copy())
    if len(results) == 2:
        (y1, dw1, db1), (y2, dw2, db2) = results.values()
        scale = lambda a: float(np.abs(a).max())
        print(f"paths agree: |dy| max {np.abs(y1 - y2).max() / scale(y1):.1e}, "
              f"|ddw| max {np.abs(dw1 - dw2).max() / scale(dw1):.1e} (relative to the largest value)")
    _im2col_stages(y, x, w, b)

    stages = []
    walls, cpus = time_in_turns(variants, args.repeat, lambda name: stages.append(_im2col_stages(y, x, w, b)))

    print(f"conv1 at {H} px, batch {N}: x {x.shape} -> y {y.shape}; medians of {args.repeat} rounds")
    total = {k: np.median([s[k] for s in stages]) for k in stages[0]}
    whole = sum(total.values())
    for k, v in total.items():
        print(f"  im2col stage {k:18s} {v * 1e3:8.1f} ms CPU ({100 * v / whole:4.1f}%)")
    for name in variants:
        if walls[name]:
            print(f"  {name:24s} wall {np.median(walls[name]) * 1e3:8.1f} ms   CPU {np.median(cpus[name]) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
