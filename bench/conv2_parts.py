"""conv2 (96 -> 256 channels, 5x5, stride 1, pad 2) on the CPU: where its time goes, and its paths
side by side with PyTorch CPU, in one process, every variant taking its turn in each round.

    python -m bench.conv2_parts --input-size 227 --batch 32 --repeat 5 [--groups 2]

Prints, per variant, the median over the rounds of the wall time and of the process's CPU time (all
its threads; under a shared machine's load the CPU time moves less than the wall time):
- Winograd F(2x2, 5x5)'s forward and weight gradient cut into their stages on one thread (input
  transform, the 36 GEMMs, output transform; dy transform), thread CPU time summed over the chunks
  of the batch, with GFLOP/s of the GEMMs (the Winograd products) and of the whole pass (counted
  as the direct convolution's multiply-adds);
- the paths' forward, weight gradient (dw + db) and data + weight gradient, 1 and 2 Numba threads;
- torch.nn.functional.conv2d and aten's convolution_backward with torch.set_num_threads(1 and 2).
Each call starts 0.2 s after the previous one, as in `refnet bench`.
"""

import argparse
import time

import numpy as np

from bench.timing import time_in_turns
from refnet.kernels.cpu import conv2d as kernels
from refnet.kernels.cpu import conv2d_winograd as wino
from refnet.kernels.cpu.gemm import UNIT_STRIDE, gemm_serial, padded_pitch

STRIDE, PAD, K, C, R = 1, 2, 256, 96, 5
E = (R + 1) ** 2


def _chunk_buffers(N, P, Cg, Kg):
    nc = wino._images_per_chunk(N, P, P)
    TP = (P + 1) // 2
    pitch = padded_pitch(nc * TP * TP)
    v_stride, m_stride = wino.spread_stride(Cg * pitch), wino.spread_stride(Kg * pitch)
    v = np.empty(E * v_stride, np.float32)
    m = np.empty(E * m_stride, np.float32)
    padded = np.empty((2 * TP + R - 1, 2 * TP + R - 1), np.float32)
    return nc, TP, pitch, v_stride, m_stride, v, m, padded


def _forward_stages(y, x, u, b, groups):
    """{stage: thread CPU seconds} of one Winograd forward, chunk by chunk on this thread."""
    N, P = x.shape[0], y.shape[2]
    Cg, Kg = C // groups, K // groups
    nc, TP, pitch, v_stride, m_stride, v, m, padded = _chunk_buffers(N, P, Cg, Kg)
    spent = {"input transform": 0.0, "36 GEMMs": 0.0, "output transform": 0.0}
    for n0 in range(0, N, nc):
        mi = min(nc, N - n0)
        for g in range(groups):
            t0 = time.thread_time()
            wino._transform_input(v, v_stride, pitch, padded, x, n0, mi, g * Cg, Cg, PAD, TP, TP, R + 1)
            t1 = time.thread_time()
            for e in range(E):
                gemm_serial(m[e * m_stride:], pitch, u[g, e].reshape(-1), Cg, UNIT_STRIDE, v[e * v_stride:], pitch,
                            UNIT_STRIDE, Kg, pitch, Cg, np.float32(1.0), np.float32(0.0))
            t2 = time.thread_time()
            wino._output_transform5(y, m, m_stride, pitch, b, True, n0, mi, g * Kg, Kg, TP, TP)
            t3 = time.thread_time()
            spent["input transform"] += t1 - t0
            spent["36 GEMMs"] += t2 - t1
            spent["output transform"] += t3 - t2
    return spent


def _filter_stages(x, dy, s, groups):
    """{stage: thread CPU seconds} of one Winograd weight gradient (before G^T S G), on this thread."""
    N, P = x.shape[0], dy.shape[2]
    Cg, Kg = C // groups, K // groups
    nc, TP, pitch, v_stride, z_stride, v, z, padded = _chunk_buffers(N, P, Cg, Kg)
    spent = {"input transform": 0.0, "dy transform": 0.0, "36 GEMMs": 0.0}
    for n0 in range(0, N, nc):
        mi = min(nc, N - n0)
        beta = np.float32(0.0) if n0 == 0 else np.float32(1.0)
        for g in range(groups):
            t0 = time.thread_time()
            wino._transform_input(v, v_stride, pitch, padded, x, n0, mi, g * Cg, Cg, PAD, TP, TP, R + 1)
            t1 = time.thread_time()
            wino._dy_transform(z, z_stride, pitch, dy, n0, mi, g * Kg, Kg, TP, TP, R + 1)
            t2 = time.thread_time()
            for e in range(E):
                gemm_serial(s[g, e].reshape(-1), Cg, z[e * z_stride:], pitch, UNIT_STRIDE, v[e * v_stride:],
                            UNIT_STRIDE, pitch, Kg, Cg, mi * TP * TP, np.float32(1.0), beta)
            t3 = time.thread_time()
            spent["input transform"] += t1 - t0
            spent["dy transform"] += t2 - t1
            spent["36 GEMMs"] += t3 - t2
    return spent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=227, help="227 (27x27 output) or 67 (7x7)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--paths", default="winograd", help="refnet paths to time (winograd, im2col, small)")
    parser.add_argument("--peak", type=float, default=0.0, help="one core's fp32 GFLOP/s (0: from /proc/cpuinfo MHz x 32)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    peak = args.peak or _core_peak()
    rng = np.random.default_rng(0)
    N, groups = args.batch, args.groups
    P = {227: 27, 67: 7}.get(args.input_size, args.input_size)  # conv2's input map: pool1's output
    Cg, Kg = C // groups, K // groups
    x = rng.uniform(-1, 1, (N, C, P, P)).astype(np.float32)
    w = rng.uniform(-0.05, 0.05, (K, Cg, R, R)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, K).astype(np.float32)
    dy = rng.uniform(-1, 1, (N, K, P, P)).astype(np.float32)
    y, dx, dw, db = np.empty_like(dy), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    u = np.empty((groups, E, Kg, Cg), np.float32)
    wino.filter_transform5(u, w, False)
    s = np.empty((groups, E, Kg, Cg), np.float32)
    direct_flop = 2.0 * N * K * Cg * R * R * P * P
    TP = (P + 1) // 2
    product_flop = 2.0 * E * Kg * Cg * groups * N * TP * TP

    paths = {
        "winograd": (kernels.conv2d_forward_winograd, kernels.conv2d_backward_winograd),
        "im2col": (kernels.conv2d_forward_im2col, kernels.conv2d_backward_im2col),
        "small": (kernels.conv2d_forward_small, kernels.conv2d_backward_small),
    }
    names = args.paths.split(",")
    variants = {"winograd fwd stages, 1 thr": None, "winograd dw stages, 1 thr": None}
    for name in names:
        forward, backward = paths[name]
        for threads in (1, 2):
            variants[f"{name} fwd, {threads} thr"] = (threads, lambda f=forward: f(y, x, w, b, STRIDE, PAD, groups))
            variants[f"{name} dw+db, {threads} thr"] = (
                threads, lambda g=backward: g(None, dw, db, x, w, dy, STRIDE, PAD, groups))
            variants[f"{name} dx+dw+db, {threads} thr"] = (
                threads, lambda g=backward: g(dx, dw, db, x, w, dy, STRIDE, PAD, groups))
    if not args.no_torch:
        import torch

        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))

        def torch_backward(mask):
            return lambda: torch.ops.aten.convolution_backward(dyt, xt, wt, [K], [STRIDE] * 2, [PAD] * 2, [1, 1],
                                                               False, [0, 0], groups, mask)

        for threads in (1, 2):
            variants[f"torch fwd, {threads} thr"] = (
                -threads, lambda: torch.nn.functional.conv2d(xt, wt, bt, STRIDE, PAD, 1, groups))
            variants[f"torch dw+db, {threads} thr"] = (-threads, torch_backward([False, True, True]))
            variants[f"torch dx+dw+db, {threads} thr"] = (-threads, torch_backward([True, True, True]))

    # Warm-up (compiles), and the paths checked against the first.
    results = {}
    for name in names:
        forward, backward = paths[name]
        forward(y, x, w, b, STRIDE, PAD, groups)
        backward(dx, dw, db, x, w, dy, STRIDE, PAD, groups)
        results[name] = (y.copy(), dx.copy(), dw.copy())
    first = results[names[0]]
    for name in names[1:]:
        print(f"{name} against {names[0]}: " + ", ".join(
            f"{label} {np.abs(a - a0).max() / np.abs(a0).max():.1e}"
            for label, a, a0 in zip(("y", "dx", "dw"), results[name], first)) + " (relative to the largest value)")
    _forward_stages(y, x, u, b, groups)
    _filter_stages(x, dy, s, groups)

    fwd_stages, dw_stages = [], []

    def run_stages(name):
        if name.startswith("winograd fwd"):
            fwd_stages.append(_forward_stages(y, x, u, b, groups))
        else:
            dw_stages.append(_filter_stages(x, dy, s, groups))

    walls, cpus = time_in_turns(variants, args.repeat, run_stages)

    print(f"conv2 at {args.input_size} px, batch {N}, groups {groups}: x {x.shape} -> y {y.shape}; "
          f"medians of {args.repeat} rounds; one core's peak taken as {peak:.0f} GFLOP/s")
    print(f"  direct multiply-adds x2: {direct_flop / 1e9:.2f} GFLOP; Winograd products: {product_flop / 1e9:.2f} GFLOP")
    for label, stages, flop_stage in (("fwd", fwd_stages, "36 GEMMs"), ("dw", dw_stages, "36 GEMMs")):
        total = {k: np.median([st[k] for st in stages]) for k in stages[0]}
        whole = sum(total.values())
        for k, v in total.items():
            rate = f"  {product_flop / v / 1e9:6.1f} GFLOP/s ({100 * product_flop / v / 1e9 / peak:4.1f}% of peak)" \
                if k == flop_stage else ""
            print(f"  winograd {label} stage {k:18s} {v * 1e3:8.1f} ms CPU ({100 * v / whole:4.1f}%){rate}")
        print(f"  winograd {label} stages, all       {whole * 1e3:8.1f} ms CPU, "
              f"{direct_flop / whole / 1e9:6.1f} direct-GFLOP/s")
    for name in variants:
        if walls[name]:
            wall, cpu = np.median(walls[name]), np.median(cpus[name])
            print(f"  {name:26s} wall {wall * 1e3:8.1f} ms   CPU {cpu * 1e3:8.1f} ms")


def _core_peak():
    """One core's fp32 peak in GFLOP/s: 2 FMA units x 8 lanes x 2 FLOP per cycle at the clock
    /proc/cpuinfo reports (Zen 3, AVX2)."""
    with open("/proc/cpuinfo") as f:
        mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    return 32 * (mhz[0] / 1e3 if mhz else 3.0)


if __name__ == "__main__":
    main()
