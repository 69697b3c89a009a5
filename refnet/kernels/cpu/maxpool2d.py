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

Both passes run one (n, c) plane per thread, so the backward's overlapping sums are done by a
single thread in a fixed order: deterministic and race-free.

Kernels: `maxpool2d_forward_reference` is the definition as plain loops; the fast forward takes
`_pool_plane_3x3_stride2` (the paper's window, plain '>' comparisons, vectorised) for every plane
without NaN and `_pool_plane` (any window, NaN-aware) otherwise. Tests hold both to the reference.
"""

import numpy as np
from numba import njit, prange


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


@njit(cache=True, nogil=True)
def _has_nan(x):
    # One flat loop with a conditional set: measured 8x faster than a loop over rows with `|=`.
    flat = x.reshape(x.size)
    found = False
    for i in range(flat.size):
        if flat[i] != flat[i]:
            found = True
    return found


@njit(cache=True, nogil=True)
def _pool_plane_3x3_stride2(y, argmax, x):
    """The paper's 3x3 stride-2 window, the nine values in registers and the stride a constant, so
    LLVM vectorises the loop over q (2x to 3x faster than _pool_plane). Plain '>' comparisons:
    the same result as _pool_plane only for a plane without NaN, which the caller checks."""
    W = x.shape[1]
    P, Q = y.shape
    for p in range(P):
        h = 2 * p
        x0, x1, x2 = x[h], x[h + 1], x[h + 2]
        y_row = y[p]
        at_row = argmax[p]
        r0 = h * W
        r1 = r0 + W
        r2 = r1 + W
        for q in range(Q):
            c = 2 * q
            best = x0[c]
            at = r0 + c
            v = x0[c + 1]
            t = v > best
            best = v if t else best
            at = r0 + c + 1 if t else at
            v = x0[c + 2]
            t = v > best
            best = v if t else best
            at = r0 + c + 2 if t else at
            v = x1[c]
            t = v > best
            best = v if t else best
            at = r1 + c if t else at
            v = x1[c + 1]
            t = v > best
            best = v if t else best
            at = r1 + c + 1 if t else at
            v = x1[c + 2]
            t = v > best
            best = v if t else best
            at = r1 + c + 2 if t else at
            v = x2[c]
            t = v > best
            best = v if t else best
            at = r2 + c if t else at
            v = x2[c + 1]
            t = v > best
            best = v if t else best
            at = r2 + c + 1 if t else at
            v = x2[c + 2]
            t = v > best
            best = v if t else best
            at = r2 + c + 2 if t else at
            y_row[q] = best
            at_row[q] = at


@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_forward_planes(y, argmax, x, size, stride):
    NC = x.shape[0]
    paper_window = size == 3 and stride == 2
    for r in prange(NC):
        if paper_window and not _has_nan(x[r]):
            _pool_plane_3x3_stride2(y[r], argmax[r], x[r])
        else:
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
