"""Local response normalisation across channels on the CPU (Krizhevsky et al. 2012, section 3.3).

    scale[n,c,h,w] = k + alpha * sum_{c'=max(0,c-size//2)}^{min(C-1,c+size//2)} x[n,c',h,w]^2
    y[n,c,h,w]     = x[n,c,h,w] * scale[n,c,h,w]^(-beta)

    dx_c = dy_c * scale_c^(-beta) - 2*alpha*beta * x_c * sum_{c' : c in window(c')} dy_c' * y_c' / scale_c'

(The window is symmetric, so "c in window(c')" is "c' in window(c)".) The paper uses k=2, size=5,
alpha=1e-4, beta=0.75.

alpha is the paper's: it is NOT divided by size. Caffe, PyTorch (nn.LocalResponseNorm) and cuDNN
divide their alpha by size, so their alpha = paper alpha * size (the paper's layer is
torch.nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)).

Layout: x, y, scale, dy, dx (N, C, H, W) float32, C-contiguous. `scale` is an output of the
forward pass, kept for the backward.

Cost: the power is the expensive part. For beta = 0.75 (the paper's) the fast kernels use
scale^(-3/4) = 1 / (sqrt(scale) * sqrt(sqrt(scale))), three correctly rounded IEEE operations that
vectorise, within a few float32 ulp of the true value; any other beta calls pow. The *_reference
kernels are the formula as plain loops, with pow throughout; the fast ones are tested against them.
"""

import math

import numpy as np
from numba import njit, prange

# hw positions per parallel task: the C rows of a task's x/y/scale chunks stay in L2.
HW_CHUNK = 256


@njit(cache=True)
def lrn_forward_reference(y, scale, x, size, alpha, beta, k):
    N, C, H, W = x.shape
    half = size // 2
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    s = np.float32(0.0)
                    for cc in range(max(0, c - half), min(C - 1, c + half) + 1):
                        s += x[n, cc, h, w] * x[n, cc, h, w]
                    sc = k + alpha * s
                    scale[n, c, h, w] = sc
                    y[n, c, h, w] = x[n, c, h, w] * sc ** (-beta)


@njit(cache=True)
def lrn_backward_reference(dx, x, y, scale, dy, size, alpha, beta, k):
    N, C, H, W = x.shape
    half = size // 2
    two_alpha_beta = np.float32(2.0) * alpha * beta
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    s = np.float32(0.0)
                    for cc in range(max(0, c - half), min(C - 1, c + half) + 1):
                        s += dy[n, cc, h, w] * y[n, cc, h, w] / scale[n, cc, h, w]
                    dx[n, c, h, w] = (
                        dy[n, c, h, w] * scale[n, c, h, w] ** (-beta) - two_alpha_beta * x[n, c, h, w] * s
                    )


@njit(inline="always")
def _pow_minus_beta(sc, beta, three_quarters):
    if three_quarters:
        r = math.sqrt(sc)
        return np.float32(1.0) / (r * math.sqrt(r))
    return sc ** (-beta)


@njit(parallel=True, cache=True)
def _lrn_forward_chunks(y, scale, x, size, alpha, beta, k):
    # x, y, scale viewed (N, C, HW). Task t = (n, hw chunk); inner loops run along hw, contiguous.
    N, C, HW = x.shape
    half = size // 2
    chunks = (HW + HW_CHUNK - 1) // HW_CHUNK
    three_quarters = beta == np.float32(0.75)
    for t in prange(N * chunks):
        n = t // chunks
        lo = (t % chunks) * HW_CHUNK
        hi = min(HW, lo + HW_CHUNK)
        for c in range(C):
            s_row = scale[n, c]
            for i in range(lo, hi):
                s_row[i] = np.float32(0.0)
            for cc in range(max(0, c - half), min(C - 1, c + half) + 1):
                x_row = x[n, cc]
                for i in range(lo, hi):
                    s_row[i] += x_row[i] * x_row[i]
            x_row = x[n, c]
            y_row = y[n, c]
            for i in range(lo, hi):
                sc = k + alpha * s_row[i]
                s_row[i] = sc
                y_row[i] = x_row[i] * _pow_minus_beta(sc, beta, three_quarters)


@njit(parallel=True, cache=True)
def _lrn_backward_chunks(dx, x, y, scale, dy, size, alpha, beta, k):
    N, C, HW = x.shape
    half = size // 2
    chunks = (HW + HW_CHUNK - 1) // HW_CHUNK
    three_quarters = beta == np.float32(0.75)
    two_alpha_beta = np.float32(2.0) * alpha * beta
    for t in prange(N * chunks):
        n = t // chunks
        lo = (t % chunks) * HW_CHUNK
        hi = min(HW, lo + HW_CHUNK)
        width = hi - lo
        # ratio[c] = dy_c * y_c / scale_c for this chunk, computed once and reused by size channels.
        ratio = np.empty((C, width), dtype=np.float32)
        for c in range(C):
            dy_row = dy[n, c]
            y_row = y[n, c]
            s_row = scale[n, c]
            r_row = ratio[c]
            for i in range(width):
                r_row[i] = dy_row[lo + i] * y_row[lo + i] / s_row[lo + i]
        for c in range(C):
            dx_row = dx[n, c]
            for i in range(lo, hi):
                dx_row[i] = np.float32(0.0)
            for cc in range(max(0, c - half), min(C - 1, c + half) + 1):
                r_row = ratio[cc]
                for i in range(width):
                    dx_row[lo + i] += r_row[i]
            x_row = x[n, c]
            dy_row = dy[n, c]
            s_row = scale[n, c]
            for i in range(lo, hi):
                dx_row[i] = dy_row[i] * _pow_minus_beta(s_row[i], beta, three_quarters) - two_alpha_beta * x_row[
                    i
                ] * dx_row[i]


def lrn_forward(y, scale, x, size, alpha, beta, k):
    """y, scale (N, C, H, W) from x (N, C, H, W)."""
    N, C, H, W = x.shape
    _lrn_forward_chunks(
        y.reshape(N, C, H * W),
        scale.reshape(N, C, H * W),
        x.reshape(N, C, H * W),
        size,
        np.float32(alpha),
        np.float32(beta),
        np.float32(k),
    )


def lrn_backward(dx, x, y, scale, dy, size, alpha, beta, k):
    """dx (N, C, H, W) from the forward's x, y, scale and the incoming gradient dy."""
    N, C, H, W = x.shape
    shape = (N, C, H * W)
    _lrn_backward_chunks(
        dx.reshape(shape),
        x.reshape(shape),
        y.reshape(shape),
        scale.reshape(shape),
        dy.reshape(shape),
        size,
        np.float32(alpha),
        np.float32(beta),
        np.float32(k),
    )
