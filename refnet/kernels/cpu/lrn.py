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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
def _times_pow_minus_beta(out_row, a_row, scale_row, beta):
    """out_row[i] = a_row[i] * scale_row[i]^(-beta), all rows of one length.

    The test on beta sits outside the loops so that each loop stays branch-free and vectorises.
    """
    if beta == np.float32(0.75):
        for i in range(out_row.size):
            r = math.sqrt(scale_row[i])
            out_row[i] = a_row[i] / (r * math.sqrt(r))
    else:
        for i in range(out_row.size):
            out_row[i] = a_row[i] * scale_row[i] ** (-beta)


# The fast kernels run one image n per task, whole hw rows from index 0 (x[n, c] is one contiguous
# row): measured 2x faster than tasks over hw chunks addressed by slices and 7x faster than flat
# offset indexing, which LLVM vectorises poorly.


@njit(inline="always")
def _scale_of_five(s_row, x0, x1, x2, x3, x4, alpha, k):
    # The paper's size=5 window away from the channel edges, in one pass with the five rows in
    # registers: 1.5x faster than five read-modify-write passes, and the same additions in the same
    # order, so the same float32 result.
    for i in range(s_row.size):
        s_row[i] = k + alpha * (x0[i] * x0[i] + x1[i] * x1[i] + x2[i] * x2[i] + x3[i] * x3[i] + x4[i] * x4[i])


@njit(parallel=True, cache=True, nogil=True)
def _lrn_forward_images(y, scale, x, size, alpha, beta, k):
    # x, y, scale viewed (N, C, HW).
    N, C, HW = x.shape
    half = size // 2
    for n in prange(N):
        for c in range(C):
            s_row = scale[n, c]
            c0, c1 = max(0, c - half), min(C - 1, c + half)
            if c1 - c0 == 4:
                _scale_of_five(s_row, x[n, c0], x[n, c0 + 1], x[n, c0 + 2], x[n, c0 + 3], x[n, c0 + 4], alpha, k)
            else:
                for i in range(HW):
                    s_row[i] = np.float32(0.0)
                for cc in range(c0, c1 + 1):
                    x_row = x[n, cc]
                    for i in range(HW):
                        s_row[i] += x_row[i] * x_row[i]
                for i in range(HW):
                    s_row[i] = k + alpha * s_row[i]
            _times_pow_minus_beta(y[n, c], x[n, c], s_row, beta)


@njit(parallel=True, cache=True, nogil=True)
def _lrn_backward_images(dx, x, y, scale, dy, size, alpha, beta, k):
    N, C, HW = x.shape
    half = size // 2
    two_alpha_beta = np.float32(2.0) * alpha * beta
    for n in prange(N):
        # ratio[c] = dy_c * y_c / scale_c, computed once and reused by the size channels around c.
        ratio = np.empty((C, HW), dtype=np.float32)
        for c in range(C):
            dy_row, y_row, s_row, r_row = dy[n, c], y[n, c], scale[n, c], ratio[c]
            for i in range(HW):
                r_row[i] = dy_row[i] * y_row[i] / s_row[i]
        window_sum = np.empty(HW, dtype=np.float32)
        for c in range(C):
            c0, c1 = max(0, c - half), min(C - 1, c + half)
            if c1 - c0 == 4:
                r0, r1, r2, r3, r4 = ratio[c0], ratio[c0 + 1], ratio[c0 + 2], ratio[c0 + 3], ratio[c0 + 4]
                for i in range(HW):
                    window_sum[i] = r0[i] + r1[i] + r2[i] + r3[i] + r4[i]
            else:
                r_row = ratio[c0]
                for i in range(HW):
                    window_sum[i] = r_row[i]
                for cc in range(c0 + 1, c1 + 1):
                    r_row = ratio[cc]
                    for i in range(HW):
                        window_sum[i] += r_row[i]
            dx_row, x_row = dx[n, c], x[n, c]
            _times_pow_minus_beta(dx_row, dy[n, c], scale[n, c], beta)
            for i in range(HW):
                dx_row[i] -= two_alpha_beta * x_row[i] * window_sum[i]


def lrn_forward(y, scale, x, size, alpha, beta, k):
    """y, scale (N, C, H, W) from x (N, C, H, W)."""
    N, C, H, W = x.shape
    _lrn_forward_images(
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
    _lrn_backward_images(
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
