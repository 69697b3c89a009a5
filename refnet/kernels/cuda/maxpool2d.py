"""Max pooling on the GPU (no padding; the paper's overlapping 3x3 stride-2 windows).

    forward:  y[n,c,p,q] = max_{0<=i,j<size} x[n,c,p*stride+i,q*stride+j]
              argmax[n,c,p,q] = h*W + w of that maximum in the (H, W) input plane (first one on ties;
              a NaN wins its window)
    backward: dx[n,c,h,w] = sum of dy[n,c,p,q] over the windows (p, q) whose argmax is (h, w),
              added in (p, q) order

Layout: x, dx (N, C, H, W); y, dy, argmax (N, C, P, Q) with P = (H - size)//stride + 1 (same for Q);
float32 except argmax int32; C-contiguous device arrays.

Forward runs one thread per output element, consecutive threads along q (coalesced).
Backward is given no window geometry (the launcher contract is (dx, dy, argmax)), so it cannot
gather over the windows covering an input element; instead one thread owns one (n, c) plane and
scatters its windows in (p, q) order into the zeroed dx plane. Overlapping windows then need no
atomics and the sums are deterministic (the same order as the CPU's serial loop), at the price
of N*C-way parallelism and strided loads.
"""

import numpy as np
from numba import cuda, float32, int32

from ._grid import elementwise_grid, unflatten4


@cuda.jit
def _maxpool_forward_kernel(y, argmax, x, size, stride):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P, Q = y.shape[2], y.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, y.size, step):
        n, c, p, q = unflatten4(flat, C, P, Q)
        h0 = p * stride
        w0 = q * stride
        best = x[n, c, h0, w0]
        best_at = h0 * W + w0
        for i in range(size):
            for j in range(size):
                v = x[n, c, h0 + i, w0 + j]
                # a NaN wins its window (the first one), so pooling never hides it
                if (v > best or v != v) and best == best:
                    best = v
                    best_at = (h0 + i) * W + w0 + j
        y[n, c, p, q] = best
        argmax[n, c, p, q] = best_at


@cuda.jit
def _fill_zero_flat(a):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, step):
        a[i] = float32(0.0)


@cuda.jit
def _maxpool_backward_kernel(dx_planes, dy_planes, argmax_planes):
    plane_size = dx_planes.shape[1]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for plane in range(start, dy_planes.shape[0], step):
        for window in range(dy_planes.shape[1]):
            at = argmax_planes[plane, window]
            if 0 <= at < plane_size:  # a corrupt argmax is skipped, never written out of bounds
                dx_planes[plane, at] += dy_planes[plane, window]


def maxpool2d_forward(y, argmax, x, size, stride):
    blocks, threads = elementwise_grid(y.size)
    _maxpool_forward_kernel[blocks, threads](y, argmax, x, np.int32(size), np.int32(stride))


def maxpool2d_backward(dx, dy, argmax):
    """Entries of argmax outside [0, H*W) are skipped. Unlike the CPU launcher this returns None
    rather than counting them: the count would cost a device-to-host copy and a synchronisation."""
    N, C, H, W = dx.shape
    planes = N * C
    blocks, threads = elementwise_grid(dx.size)
    _fill_zero_flat[blocks, threads](dx.reshape(-1))
    blocks, threads = elementwise_grid(planes)
    _maxpool_backward_kernel[blocks, threads](
        dx.reshape(planes, H * W), dy.reshape(planes, -1), argmax.reshape(planes, -1)
    )
