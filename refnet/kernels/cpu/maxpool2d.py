"""2-D max pooling on the CPU, no padding (the paper's 3x3 stride-2 overlapping pooling and any other).

    forward:  y[n,c,p,q]      = max_{0<=i,j<size} x[n,c,p*stride+i,q*stride+j]
              argmax[n,c,p,q] = h*W + w of that maximum inside the (n, c) input plane
    backward: dx[n,c,h,w]     = sum of dy[n,c,p,q] over the windows whose argmax is h*W + w
                                (a position can win several overlapping windows: gradients add)

Layout: x (N, C, H, W) float32; y, argmax, dy (N, C, P, Q) with P = (H - size)//stride + 1,
Q = (W - size)//stride + 1; argmax int32; dx (N, C, H, W) float32. All C-contiguous.

Ties go to the first maximum in row-major window order (i, then j): a later element replaces the
running maximum only when strictly greater. A NaN in a window wins it (the first NaN, if several),
so a NaN input is never hidden by pooling.

Both passes run each (n, c) plane on one thread, so the backward's overlapping sums are done by a
single thread in a fixed order: deterministic and race-free.

Kernels: `maxpool2d_forward_reference` is the definition as plain loops; the fast forward takes
`_pool_planes_stride2` (stride 2, any window: sixteen outputs per vector, simd.py) for the
paper's stride and `_pool_plane` (scalar, any stride) otherwise. Both apply the reference's rule in
the reference's order, NaN included. Tests hold both to the reference.
"""

import numpy as np
from numba import njit, prange

from .simd import HALF, LANES, vevens, vload_first, vramp_halves, vselect, vsplat, vstore_first, vupper_half, vwins

# Positions inside a plane are carried as float32 by the vector kernel: whole numbers up to 2**24.
FLOAT_EXACT_INTS = 2**24
# Planes per parallel task of the stride-2 kernel (even: narrow planes are taken two at a time).
PLANES_PER_TASK = 4


@njit(cache=True, nogil=True)
def maxpool2d_forward_reference(y, argmax, x, size, stride):
    """The definition as plain loops: one output at a time, its window in row-major order."""
    N, C, H, W = x.shape
    P, Q = y.shape[2], y.shape[3]
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    h0 = p * stride
                    w0 = q * stride
                    best = x[n, c, h0, w0]
                    best_at = h0 * W + w0
                    for i in range(size):
                        for j in range(size):
                            v = x[n, c, h0 + i, w0 + j]
                            if (v > best or v != v) and best == best:  # as _wins below
                                best = v
                                best_at = (h0 + i) * W + w0 + j
                    y[n, c, p, q] = best
                    argmax[n, c, p, q] = best_at


@njit(inline="always")
def _wins(v, best):
    """Does v replace the running maximum? Strictly greater (ties keep the earlier), or the first NaN."""
    return (v > best or v != v) and best == best


@njit(cache=True, nogil=True)
def _pool_plane(y, argmax, x, size, stride):
    """Any window and stride, NaN-aware. Same comparisons in the same order per output as the
    reference; the loop over q is innermost so each window offset (i, j) covers a whole output row."""
    H, W = x.shape
    P, Q = y.shape
    for p in range(P):
        h0 = p * stride
        y_row = y[p]
        at_row = argmax[p]
        x_row = x[h0]
        for q in range(Q):
            y_row[q] = x_row[q * stride]
            at_row[q] = h0 * W + q * stride
        for i in range(size):
            x_row = x[h0 + i]
            for j in range(size):
                if i == 0 and j == 0:
                    continue
                at_base = (h0 + i) * W + j
                for q in range(Q):
                    v = x_row[q * stride + j]
                    if _wins(v, y_row[q]):
                        y_row[q] = v
                        at_row[q] = at_base + q * stride


@njit(cache=True, nogil=True, inline="always")
def _four_half_rows(ys, ats, xs, size, HW, W, PQ, Q, ra, qa, rb, qb, p, na, nb, nc, nd):
    """Stride 2: up to eight outputs of each of four half-rows, in two vectors of two halves:
    (plane ra, row p, outputs qa..; plane rb, row p, outputs qb..) and the same for row p + 1. na,
    nb, nc, nd: the outputs kept of each (0: none, and its inputs are not read).
    For window offset (i, j), a half-row's inputs are every other value of the 16 from its
    x[2p + i, 2q + j] (masked loads stop at the row's end). The two vectors are independent chains
    of comparisons, so one's latency hides behind the other's. Positions travel as floats."""
    best1 = best2 = at1 = at2 = vsplat(np.float32(0.0))
    for i in range(size):
        for j in range(size):
            sa = (2 * p + i) * W + 2 * qa + j
            sb = (2 * p + i) * W + 2 * qb + j
            left_a = W - 2 * qa - j  # values from sa to the end of the row
            left_b = W - 2 * qb - j
            v1 = vevens(vload_first(xs, ra * HW + sa, left_a if na > 0 else 0),
                        vload_first(xs, rb * HW + sb, left_b if nb > 0 else 0))
            v2 = vevens(vload_first(xs, ra * HW + sa + 2 * W, left_a if nc > 0 else 0),
                        vload_first(xs, rb * HW + sb + 2 * W, left_b if nd > 0 else 0))
            at_v1 = vramp_halves(np.float32(sa), np.float32(sb), np.float32(2.0))
            at_v2 = vramp_halves(np.float32(sa + 2 * W), np.float32(sb + 2 * W), np.float32(2.0))
            if i == 0 and j == 0:
                best1, at1, best2, at2 = v1, at_v1, v2, at_v2
            else:
                wins1 = vwins(v1, best1)
                wins2 = vwins(v2, best2)
                best1 = vselect(wins1, v1, best1)
                at1 = vselect(wins1, at_v1, at1)
                best2 = vselect(wins2, v2, best2)
                at2 = vselect(wins2, at_v2, at2)
    out_a = ra * PQ + p * Q + qa
    out_b = rb * PQ + p * Q + qb
    vstore_first(ys, out_a, best1, na)
    vstore_first(ats, out_a, at1, na)
    vstore_first(ys, out_b, vupper_half(best1), nb)
    vstore_first(ats, out_b, vupper_half(at1), nb)
    vstore_first(ys, out_a + Q, best2, nc)
    vstore_first(ats, out_a + Q, at2, nc)
    vstore_first(ys, out_b + Q, vupper_half(best2), nd)
    vstore_first(ats, out_b + Q, vupper_half(at2), nd)


@njit(cache=True, nogil=True)
def _pool_planes_stride2(ys, ats, xs, size, H, W, P, Q, r0, r1):
    """Planes r0 .. r1-1 (flat views), stride 2, any window: the same comparisons in the same order
    per output as the reference. Rows of more than 8 outputs fill a vector with 16 outputs of one
    row; shorter rows (pool5's 6) with one row of two planes."""
    HW, PQ = H * W, P * Q
    if Q > HALF:
        for r in range(r0, r1):
            for p in range(0, P, 2):
                below = p + 1 < P
                for q0 in range(0, Q, LANES):
                    na = min(HALF, Q - q0)
                    nb = max(0, min(HALF, Q - q0 - HALF))
                    _four_half_rows(ys, ats, xs, size, HW, W, PQ, Q, r, q0, r, q0 + HALF, p, na, nb,
                                    na if below else 0, nb if below else 0)
    else:
        for ra in range(r0, r1, 2):
            rb = min(ra + 1, r1 - 1)
            nb = Q if ra + 1 < r1 else 0
            for p in range(0, P, 2):
                below = p + 1 < P
                _four_half_rows(ys, ats, xs, size, HW, W, PQ, Q, ra, 0, rb, 0, p, Q, nb,
                                Q if below else 0, nb if below else 0)


@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_forward_planes(y, argmax, x, size, stride):
    NC, H, W = x.shape
    P, Q = y.shape[1], y.shape[2]
    if stride == 2 and H * W < FLOAT_EXACT_INTS:
        xs, ys, ats = x.reshape(NC * H * W), y.reshape(NC * P * Q), argmax.reshape(NC * P * Q)
        for t in prange((NC + PLANES_PER_TASK - 1) // PLANES_PER_TASK):
            r0 = t * PLANES_PER_TASK
            _pool_planes_stride2(ys, ats, xs, size, H, W, P, Q, r0, min(NC, r0 + PLANES_PER_TASK))
    else:
        for r in prange(NC):
            _pool_plane(y[r], argmax[r], x[r], size, stride)


@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_backward_planes(dx, dy, argmax):
    NC, HW = dx.shape
    PQ = dy.shape[1]
    out_of_plane = 0
    for r in prange(NC):
        dx_plane = dx[r]
        for k in range(HW):
            dx_plane[k] = np.float32(0.0)
        for k in range(PQ):
            at = argmax[r, k]
            if 0 <= at < HW:
                dx_plane[at] += dy[r, k]
            else:
                out_of_plane += 1
    return out_of_plane


def maxpool2d_forward(y, argmax, x, size, stride):
    """y, argmax (N, C, P, Q) from x (N, C, H, W); window size x size, step stride."""
    N, C, H, W = x.shape
    P, Q = y.shape[2], y.shape[3]
    _maxpool2d_forward_planes(
        y.reshape(N * C, P, Q), argmax.reshape(N * C, P, Q), x.reshape(N * C, H, W), size, stride
    )


def maxpool2d_backward(dx, dy, argmax):
    """dx (N, C, H, W) = scatter-add of dy (N, C, P, Q) at argmax.

    Returns the number of argmax entries outside [0, H*W); they are skipped, and the op layer turns
    a non-zero count into a ValueError (checking inside the kernel costs no extra pass over argmax).
    """
    N, C, H, W = dx.shape
    P, Q = dy.shape[2], dy.shape[3]
    return _maxpool2d_backward_planes(
        dx.reshape(N * C, H * W), dy.reshape(N * C, P * Q), argmax.reshape(N * C, P * Q)
    )
