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

Cost: the power is the expensive part. Exact, scale^(-3/4) = 1 / (sqrt(scale) * sqrt(sqrt(scale)))
takes two square roots and a division per value, and those share one divide unit (on Zen 3 half
of the forward's time). For the paper's beta = 0.75 the fast kernels instead take
r = scale^(-1/2) and u = r^(-1/2) = scale^(1/4), each from the hardware's reciprocal square root
estimate and one Newton step on the FMA units, and scale^(-3/4) = r^2 u (1 / scale = r^2 in the
backward): a relative error of at most 4.0e-7 measured on norm1's and norm2's activations
(the exact form's 2.1e-7; the tests hold it to 5e-7 over scales 2^-126 .. 2^126; beyond 2^126,
r^2 leaves float32's normal range and the result degrades, and a scale of inf gives NaN). The
estimate's bits differ between CPU vendors, so these results do too (README: a run resumed on
another CPU model continues, not bit for bit). Any other beta, or k below float32's normal range,
calls pow. The *_reference kernels are the formula as plain loops, with
pow throughout; the fast ones are tested against them.
"""

import functools

import numpy as np
from numba import njit, prange

from .simd import LANES, vfirst, vfma, vload, vload_masked, vmul, vrsqrt_estimate, vsplat, vstore, vstore_masked


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


_SMALLEST_NORMAL = np.float32(2.0 ** -126)


@functools.lru_cache(maxsize=64)
def _estimates_power(beta, k):
    """Whether the fast kernels take scale^(-beta) from the square-root estimate (see the module doc),
    for beta and k as float32. Remembered per (beta, k): a call's fixed cost counts at 67 px."""
    return bool(np.float32(beta) == np.float32(0.75) and np.float32(k) >= _SMALLEST_NORMAL)


@njit(inline="always")
def _rsqrt(s):
    # One Newton step on the estimate r0: r = r0 (3/2 - s r0^2 / 2).
    r0 = vrsqrt_estimate(s)
    return vmul(r0, vfma(vmul(vsplat(np.float32(-0.5)), s), vmul(r0, r0), vsplat(np.float32(1.5))))


@njit(inline="always")
def _power_and_reciprocal(s):
    """(s^(-3/4), 1 / s) lane by lane, for normal s."""
    r = _rsqrt(s)
    r2 = vmul(r, r)
    return vmul(r2, _rsqrt(r)), r2


@njit(cache=True, nogil=True)
def _times_pow_minus_beta(out_row, a_row, scale_row, beta, estimated):
    """out_row[i] = a_row[i] * scale_row[i]^(-beta), all rows of one length; beta = 0.75 where
    `estimated`. The test sits outside the loops so that each loop stays branch-free. A function
    of its own, not inlined: the forward calls it from two places, and an inlined copy of the
    estimate at each cost a second or more of compiling."""
    n = out_row.size
    if estimated:
        whole = n // LANES * LANES
        for i in range(0, whole, LANES):
            power, _ = _power_and_reciprocal(vload(scale_row, i))
            vstore(out_row, i, vmul(vload(a_row, i), power))
        if whole < n:
            tail = vfirst(n - whole)
            power, _ = _power_and_reciprocal(vload_masked(scale_row, whole, tail))
            vstore_masked(out_row, whole, vmul(vload_masked(a_row, whole, tail), power), tail)
    else:
        for i in range(n):
            out_row[i] = a_row[i] * scale_row[i] ** (-beta)


@njit(inline="always")
def _power_and_ratio(dx_row, ratio_row, dy_row, y_row, scale_row, beta, estimated):
    """dx_row = dy * scale^(-beta) and ratio_row = dy * y / scale, all rows of one length."""
    n = dx_row.size
    if estimated:
        whole = n // LANES * LANES
        for i in range(0, whole, LANES):
            power, reciprocal = _power_and_reciprocal(vload(scale_row, i))
            dy = vload(dy_row, i)
            vstore(dx_row, i, vmul(dy, power))
            vstore(ratio_row, i, vmul(vmul(dy, vload(y_row, i)), reciprocal))
        if whole < n:
            tail = vfirst(n - whole)
            power, reciprocal = _power_and_reciprocal(vload_masked(scale_row, whole, tail))
            dy = vload_masked(dy_row, whole, tail)
            vstore_masked(dx_row, whole, vmul(dy, power), tail)
            vstore_masked(ratio_row, whole, vmul(vmul(dy, vload_masked(y_row, whole, tail)), reciprocal), tail)
    else:
        for i in range(n):
            dx_row[i] = dy_row[i] * scale_row[i] ** (-beta)
            ratio_row[i] = dy_row[i] * y_row[i] / scale_row[i]


# The fast kernels run one image n per task. Channels whose window is the paper's whole five
# (c = 2 .. C-3) hold one contiguous run of values, x[n, 2*HW : (C-2)*HW] in the image's flat view,
# whose neighbours c-2 .. c+2 are the same run shifted by -2*HW .. 2*HW: taken in chunks of CHUNK
# values, so that the vector loops run long on small maps (13x13, 3x3) and the chunk stays in L1
# on large ones. The clipped windows at the channel edges, and other sizes, go row by row.
CHUNK = 1024


@njit(inline="always")
def _scale_of_five(s_row, x0, x1, x2, x3, x4, alpha, k):
    # In one pass with the five rows in registers: 1.5x faster than five read-modify-write passes,
    # and the same additions in the same order as _scale_of_rows, so the same float32 result.
    for i in range(s_row.size):
        s_row[i] = k + alpha * (x0[i] * x0[i] + x1[i] * x1[i] + x2[i] * x2[i] + x3[i] * x3[i] + x4[i] * x4[i])


@njit(inline="always")
def _scale_of_rows(s_row, xs, c0, c1, HW, alpha, k):
    """scale of one row from x's channel rows c0 .. c1 (xs: the image's flat view)."""
    for i in range(HW):
        s_row[i] = np.float32(0.0)
    for cc in range(c0, c1 + 1):
        x_row = xs[cc * HW : (cc + 1) * HW]
        for i in range(HW):
            s_row[i] += x_row[i] * x_row[i]
    for i in range(HW):
        s_row[i] = k + alpha * s_row[i]


@njit(inline="always")
def _has_run(C, size):
    """Whether there is a run of whole five-channel windows (channels 2 .. C-3)."""
    return size == 5 and C >= 5


@njit(inline="always")
def _row_by_row(c, C, size):
    """Whether channel c goes row by row (not in the run of whole five-channel windows)."""
    return not _has_run(C, size) or c < 2 or c >= C - 2


@njit(parallel=True, cache=True, nogil=True)
def _lrn_forward_images(y, scale, x, HW, size, alpha, beta, k, estimated):
    # x, y, scale viewed (N, C*HW).
    N, C = x.shape[0], x.shape[1] // HW
    half = size // 2
    for n in prange(N):
        xs, ss, ys = x[n], scale[n], y[n]
        for c in range(C):
            if _row_by_row(c, C, size):
                row = slice(c * HW, (c + 1) * HW)
                _scale_of_rows(ss[row], xs, max(0, c - half), min(C - 1, c + half), HW, alpha, k)
                _times_pow_minus_beta(ys[row], xs[row], ss[row], beta, estimated)
        if _has_run(C, size):
            for lo in range(2 * HW, (C - 2) * HW, CHUNK):
                hi = min(lo + CHUNK, (C - 2) * HW)
                _scale_of_five(ss[lo:hi], xs[lo - 2 * HW : hi - 2 * HW], xs[lo - HW : hi - HW], xs[lo:hi],
                               xs[lo + HW : hi + HW], xs[lo + 2 * HW : hi + 2 * HW], alpha, k)
                _times_pow_minus_beta(ys[lo:hi], xs[lo:hi], ss[lo:hi], beta, estimated)


@njit(parallel=True, cache=True, nogil=True)
def _lrn_backward_images(dx, x, y, scale, dy, HW, size, alpha, beta, k, estimated):
    # All viewed (N, C*HW).
    N, C = x.shape[0], x.shape[1] // HW
    half = size // 2
    two_alpha_beta = np.float32(2.0) * alpha * beta
    for n in prange(N):
        xs, dxs = x[n], dx[n]
        # dx_c starts as dy_c * scale_c^(-beta); ratio_c = dy_c * y_c / scale_c, computed once and
        # reused by the size channels around c.
        ratio = np.empty(C * HW, dtype=np.float32)
        _power_and_ratio(dxs, ratio, dy[n], y[n], scale[n], beta, estimated)
        window_sum = np.empty(HW, dtype=np.float32)
        for c in range(C):
            if _row_by_row(c, C, size):
                c0, c1 = max(0, c - half), min(C - 1, c + half)
                for i in range(HW):
                    window_sum[i] = ratio[c0 * HW + i]
                for cc in range(c0 + 1, c1 + 1):
                    r_row = ratio[cc * HW : (cc + 1) * HW]
                    for i in range(HW):
                        window_sum[i] += r_row[i]
                dx_row, x_row = dxs[c * HW : (c + 1) * HW], xs[c * HW : (c + 1) * HW]
                for i in range(HW):
                    dx_row[i] -= two_alpha_beta * x_row[i] * window_sum[i]
        if _has_run(C, size):
            for lo in range(2 * HW, (C - 2) * HW, CHUNK):
                hi = min(lo + CHUNK, (C - 2) * HW)
                r0, r1, r2 = ratio[lo - 2 * HW : hi - 2 * HW], ratio[lo - HW : hi - HW], ratio[lo:hi]
                r3, r4 = ratio[lo + HW : hi + HW], ratio[lo + 2 * HW : hi + 2 * HW]
                dx_run, x_run = dxs[lo:hi], xs[lo:hi]
                for i in range(hi - lo):
                    dx_run[i] -= two_alpha_beta * x_run[i] * (r0[i] + r1[i] + r2[i] + r3[i] + r4[i])


def lrn_forward(y, scale, x, size, alpha, beta, k):
    """y, scale (N, C, H, W) from x (N, C, H, W)."""
    N, C, H, W = x.shape
    _lrn_forward_images(
        y.reshape(N, C * H * W),
        scale.reshape(N, C * H * W),
        x.reshape(N, C * H * W),
        H * W,
        size,
        np.float32(alpha),
        np.float32(beta),
        np.float32(k),
        _estimates_power(beta, k),
    )


def lrn_backward(dx, x, y, scale, dy, size, alpha, beta, k):
    """dx (N, C, H, W) from the forward's x, y, scale and the incoming gradient dy."""
    N, C, H, W = x.shape
    shape = (N, C * H * W)
    _lrn_backward_images(
        dx.reshape(shape),
        x.reshape(shape),
        y.reshape(shape),
        scale.reshape(shape),
        dy.reshape(shape),
        H * W,
        size,
        np.float32(alpha),
        np.float32(beta),
        np.float32(k),
        _estimates_power(beta, k),
    )
