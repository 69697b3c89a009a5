"""Local response normalisation across channels on the GPU (Krizhevsky et al. 2012, section 3.3).

    scale[n,c,h,w] = k + alpha * sum_{c'=max(0,c-size//2)}^{min(C-1,c+size//2)} x[n,c',h,w]^2
    y[n,c,h,w]     = x[n,c,h,w] * scale[n,c,h,w]^(-beta)

    dx_c = dy_c * scale_c^(-beta) - 2*alpha*beta * x_c * sum_{c' in window(c)} dy_c' * y_c' / scale_c'

(The window is symmetric, so "c in window(c')" is "c' in window(c)".) alpha is the paper's: NOT
divided by size (cuDNN / PyTorch / Caffe alpha = paper alpha * size).

Layout: x, y, scale, dy, dx (N, C, H, W) float32, C-contiguous device arrays.

One thread per element (n, c, h, w), consecutive threads along h*W + w, so each of the up to
`size` channel reads is coalesced and a warp's neighbours share them through L1. The power uses
the same form as the CPU kernel: for beta = 0.75, scale^(-3/4) = 1 / (sqrt(s) * sqrt(sqrt(s)))
(three correctly rounded operations), pow otherwise.
"""

import math

import numpy as np
from numba import cuda, float32, int32

from ._grid import elementwise_grid, unflatten3


@cuda.jit(device=True, inline=True)
def _pow_minus_beta(sc, beta, three_quarters):
    if three_quarters:
        r = math.sqrt(sc)
        return float32(1.0) / (r * math.sqrt(r))
    return sc ** (-beta)


@cuda.jit
def _lrn_forward_kernel(y, scale, x, size, alpha, beta, k):
    # x, y, scale viewed (N, C, HW)
    C, HW = x.shape[1], x.shape[2]
    half = size // int32(2)
    three_quarters = beta == float32(0.75)
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, x.size, step):
        n, c, i = unflatten3(flat, C, HW)
        s = float32(0.0)
        for cc in range(max(int32(0), c - half), min(C - int32(1), c + half) + int32(1)):
            v = x[n, cc, i]
            s += v * v
        sc = k + alpha * s
        scale[n, c, i] = sc
        y[n, c, i] = x[n, c, i] * _pow_minus_beta(sc, beta, three_quarters)


@cuda.jit
def _lrn_backward_kernel(dx, x, y, scale, dy, size, alpha, beta, k):
    C, HW = x.shape[1], x.shape[2]
    half = size // int32(2)
    three_quarters = beta == float32(0.75)
    two_alpha_beta = float32(2.0) * alpha * beta
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, x.size, step):
        n, c, i = unflatten3(flat, C, HW)
        s = float32(0.0)
        for cc in range(max(int32(0), c - half), min(C - int32(1), c + half) + int32(1)):
            s += dy[n, cc, i] * y[n, cc, i] / scale[n, cc, i]
        dx[n, c, i] = dy[n, c, i] * _pow_minus_beta(scale[n, c, i], beta, three_quarters) - two_alpha_beta * x[
            n, c, i
        ] * s


def _planes(a):
    N, C, H, W = a.shape
    return a.reshape(N, C, H * W)


def lrn_forward(y, scale, x, size, alpha, beta, k):
    """y, scale (N, C, H, W) from x (N, C, H, W)."""
    blocks, threads = elementwise_grid(x.size)
    _lrn_forward_kernel[blocks, threads](
        _planes(y), _planes(scale), _planes(x), np.int32(size), np.float32(alpha), np.float32(beta), np.float32(k)
    )


def lrn_backward(dx, x, y, scale, dy, size, alpha, beta, k):
    """dx (N, C, H, W) from the forward's x, y, scale and the incoming gradient dy."""
    blocks, threads = elementwise_grid(x.size)
    _lrn_backward_kernel[blocks, threads](
        _planes(dx), _planes(x), _planes(y), _planes(scale), _planes(dy),
        np.int32(size), np.float32(alpha), np.float32(beta), np.float32(k),
    )
