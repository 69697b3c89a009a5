"""Average pooling on the GPU (no padding; every window lies inside the input).

    forward:  y[n,c,p,q]  = sum_{0<=i,j<size} x[n,c,p*stride+i,q*stride+j] / size^2
    backward: dx[n,c,h,w] = sum over the windows (p, q) covering (h, w) of dy[n,c,p,q] / size^2

Layout: x, dx (N, C, H, W); y, dy (N, C, P, Q) with P = (H - size)//stride + 1 (same for Q);
float32, C-contiguous device arrays.

One thread per output element, consecutive threads along the last axis (coalesced). Backward
gathers over the at most ceil(size/stride)^2 windows covering each input element instead of
scattering, so overlapping windows need no atomics and the sums are deterministic.
"""

import numpy as np
from numba import cuda, float32

from ._grid import elementwise_grid, unflatten4


@cuda.jit
def _avgpool_forward_kernel(y, x, size, stride, inv_area):
    C = x.shape[1]
    P, Q = y.shape[2], y.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, y.size, step):
        n, c, p, q = unflatten4(flat, C, P, Q)
        total = float32(0.0)
        for i in range(size):
            for j in range(size):
                total += x[n, c, p * stride + i, q * stride + j]
        y[n, c, p, q] = total * inv_area


@cuda.jit
def _avgpool_backward_kernel(dx, dy, size, stride, inv_area):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P, Q = dy.shape[2], dy.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, dx.size, step):
        n, c, h, w = unflatten4(flat, C, H, W)
        # the windows p with p*stride <= h <= p*stride + size - 1
        p_first = max(0, (h - size + stride) // stride)
        p_last = min(P - 1, h // stride)
        q_first = max(0, (w - size + stride) // stride)
        q_last = min(Q - 1, w // stride)
        total = float32(0.0)
        for p in range(p_first, p_last + 1):
            for q in range(q_first, q_last + 1):
                total += dy[n, c, p, q]
        dx[n, c, h, w] = total * inv_area


def avgpool2d_forward(y, x, size, stride):
    blocks, threads = elementwise_grid(y.size)
    _avgpool_forward_kernel[blocks, threads](y, x, np.int32(size), np.int32(stride), np.float32(1.0 / (size * size)))


def avgpool2d_backward(dx, dy, size, stride):
    blocks, threads = elementwise_grid(dx.size)
    _avgpool_backward_kernel[blocks, threads](dx, dy, np.int32(size), np.int32(stride), np.float32(1.0 / (size * size)))
