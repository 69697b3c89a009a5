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

Kernels: `maxpool2d_forward_reference` is the definition as plain loops; the fast forward takes,
at stride 2, sixteen outputs per vector (simd.py), separable: the maximum along each window row,
then down the rows; `_pool_planes_3x3` for the paper's 3x3 window reduces each input row once and
keeps everything in registers, `_pool_planes_stride2` any other window; and `_pool_plane`
(scalar, any window and stride) otherwise. All give the reference's winner, NaN and ties
included. Tests hold them to the reference bit for bit.
"""

import numpy as np
from numba import njit, prange

from .machine import PREFETCH_MAX_PLANE
from .simd import (HALF, LANES, prefetch, vadd, vevens, vfirst, vload, vload_masked, vodds, vramp_halves, vselect,
                   vsplat, vstore, vstore_masked, vwins, vzero)

# Positions inside a plane are carried as float32 by the vector kernel: whole numbers up to 2**24.
FLOAT_EXACT_INTS = 2**24
# Planes per parallel task of the stride-2 kernel (even: narrow planes are taken two at a time).
PLANES_PER_TASK = 16
# The stride-2 kernel prefetches the next plane(s) into L1 while pooling one, for planes of up to
# PREFETCH_MAX_PLANE values, sized from this machine's L1d (machine.py; 1,024 on a 32 KB L1d):
# pool2, pool5 6-29% faster, pool1's 12 KB planes 8-19% slower with it (the hardware's own
# prefetch keeps up along their 220-byte rows). bench/results/cpu.md, fourth session, change 3.


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
def _prefetch_rows(xs, plane, start, count):
    """Ask for the cache lines of xs[plane + start : plane + start + count] (plane < 0: none)."""
    if plane >= 0:
        for k in range(plane + start, plane + start + count, LANES):
            prefetch(xs, k)


@njit(cache=True, nogil=True, inline="always")
def _store_outputs(ys, ats, at, best, best_at, whole, keep):
    """One vector of 16 outputs and their positions from flat position at: all lanes (`whole`), or
    those of mask keep. The kernels write whole vectors wherever the lanes past a row's end fall
    on outputs written after them, and mask only where they would not: a masked store costs
    several times a plain one on AMD's cores (bench/results/cpu-amd-epyc-zen3.md)."""
    if whole:
        vstore(ys, at, best)
        vstore(ats, at, best_at)
    else:
        vstore_masked(ys, at, best, keep)
        vstore_masked(ats, at, best_at, keep)


@njit(cache=True, nogil=True, inline="always")
def _copy_out(ys, ats, out, ysc, asc, at, pitch, P, Q):
    """Plane outputs ys[out : out + P*Q] (and positions) from scratch rows pitch apart."""
    for p in range(P):
        y_row = ys[out + p * Q : out + p * Q + Q]
        at_row = ats[out + p * Q : out + p * Q + Q]
        y_src = ysc[at + p * pitch : at + p * pitch + Q]
        at_src = asc[at + p * pitch : at + p * pitch + Q]
        for q in range(Q):
            y_row[q] = y_src[q]
            at_row[q] = at_src[q]


@njit(cache=True, nogil=True, inline="always")
def _wins_into(v, v_at, best, best_at):
    """The running maximum after v: v where it wins (strictly greater, or the first NaN)."""
    wins = vwins(v, best)
    return vselect(wins, v, best), vselect(wins, v_at, best_at)


@njit(cache=True, nogil=True, inline="always")
def _row_max3(xs, at_a, at_b, lo, hi, lo2, hi2, first_at, wide):
    """Window 3, stride 2, along one input row: lane by lane, the maximum of x[h, 2q + j], j < 3,
    and its position first_at + j. Lanes 0-7 read from flat position at_a, lanes 8-15 from at_b;
    j = 0 and 1 are the even and odd values of the 32 loaded there, j = 2 the even ones of the
    32 two further on. For rows of more than 8 outputs (`wide`) the lanes past the row's end read
    on into the next rows, with masked loads (lo, hi, lo2, hi2: the lanes inside the row) only
    where the loads would pass x's end: plain loads cost a third as much on pool1; two planes'
    short rows per vector (not wide) keep the masked loads, measured faster there
    (bench/results/cpu-amd-epyc-zen3.md)."""
    if wide and max(at_a, at_b) + 2 + LANES <= xs.size:
        # Plain loads: the lanes past the row's end only feed outputs past it (each output lane
        # reads its own window), which are overwritten or never stored.
        a, b = vload(xs, at_a), vload(xs, at_b)
        third = vevens(vload(xs, at_a + 2), vload(xs, at_b + 2))
    else:
        a, b = vload_masked(xs, at_a, lo), vload_masked(xs, at_b, hi)
        third = vevens(vload_masked(xs, at_a + 2, lo2), vload_masked(xs, at_b + 2, hi2))
    best, best_at = _wins_into(vodds(a, b), vadd(first_at, vsplat(np.float32(1.0))), vevens(a, b), first_at)
    return _wins_into(third, vadd(first_at, vsplat(np.float32(2.0))), best, best_at)


@njit(cache=True, nogil=True, inline="always")
def _pool_vector_3x3(ys, ats, out, pitch, last_lanes, xs, W, P, plane_a, qa, na, plane_b, qb, nb, ahead_a, ahead_b,
                     wide):
    """Window 3, stride 2: one column of vectors of 16 outputs, output rows 0 .. P-1; the two
    halves as in _row_max3 (8 outputs of plane a's rows from qa, 8 of plane b's from qb; na, nb
    of them valid, 0: not read), stored from flat positions out + p*pitch, all 16 lanes but in
    the last row, which writes only its first last_lanes.
    Separable: output row p is the first winner of the row maxima of input rows 2p, 2p+1, 2p+2,
    in that order, and row 2p+2's is also row p+1's first, so each input row is reduced once.
    Along the way, the same rows of the planes at ahead_a, ahead_b (< 0: none) are prefetched:
    the next planes, whose rows the hardware's prefetch alone fetches too late when planes are
    small (see PREFETCH_MAX_PLANE)."""
    lo, hi = vfirst(W - 2 * qa if na > 0 else 0), vfirst(W - 2 * qb if nb > 0 else 0)
    lo2, hi2 = vfirst(W - 2 * qa - 2 if na > 0 else 0), vfirst(W - 2 * qb - 2 if nb > 0 else 0)
    keep_last = vfirst(last_lanes)
    ramp = vramp_halves(np.float32(2 * qa), np.float32(2 * qb), np.float32(2.0))
    at_a, at_b = plane_a + 2 * qa, plane_b + 2 * qb
    top, top_at = _row_max3(xs, at_a, at_b, lo, hi, lo2, hi2, ramp, wide)
    for p in range(P):
        h = 2 * p + 1
        _prefetch_rows(xs, ahead_a, (h - 1) * W, 2 * W)
        _prefetch_rows(xs, ahead_b, (h - 1) * W, 2 * W)
        mid, mid_at = _row_max3(xs, at_a + h * W, at_b + h * W, lo, hi, lo2, hi2,
                                vadd(ramp, vsplat(np.float32(h * W))), wide)
        bottom, bottom_at = _row_max3(xs, at_a + (h + 1) * W, at_b + (h + 1) * W, lo, hi, lo2, hi2,
                                      vadd(ramp, vsplat(np.float32((h + 1) * W))), wide)
        best, best_at = _wins_into(mid, mid_at, top, top_at)
        best, best_at = _wins_into(bottom, bottom_at, best, best_at)
        _store_outputs(ys, ats, out + p * pitch, best, best_at, p < P - 1 or last_lanes >= LANES, keep_last)
        top, top_at = bottom, bottom_at


@njit(cache=True, nogil=True, inline="always")
def _pool_vector_any(ys, ats, out, pitch, last_lanes, xs, rows, size, W, P, plane_a, qa, na, plane_b, qb, nb, wide):
    """Any window, stride 2; arguments as _pool_vector_3x3's. The same separable order with the
    row maxima of the 2(P-1) + size input rows kept in `rows` (value lanes, then position lanes):
    x[h, 2q + j] for offset j are the even values of the 32 from there."""
    ramp = vramp_halves(np.float32(2 * qa), np.float32(2 * qb), np.float32(2.0))
    for h in range(2 * (P - 1) + size):
        first_at = vadd(ramp, vsplat(np.float32(h * W)))
        at_a, at_b = plane_a + h * W + 2 * qa, plane_b + h * W + 2 * qb
        plain = wide and max(at_a, at_b) + size - 1 + LANES <= xs.size  # as in _row_max3
        best, best_at = vzero(), first_at
        for j in range(size):
            if plain:
                v = vevens(vload(xs, at_a + j), vload(xs, at_b + j))
            else:
                v = vevens(vload_masked(xs, at_a + j, vfirst(W - 2 * qa - j if na > 0 else 0)),
                           vload_masked(xs, at_b + j, vfirst(W - 2 * qb - j if nb > 0 else 0)))
            if j == 0:
                best = v
            else:
                best, best_at = _wins_into(v, vadd(first_at, vsplat(np.float32(j))), best, best_at)
        vstore(rows, h * 2 * LANES, best)
        vstore(rows, h * 2 * LANES + LANES, best_at)
    keep_last = vfirst(last_lanes)
    for p in range(P):
        r = 2 * p * 2 * LANES
        best, best_at = vload(rows, r), vload(rows, r + LANES)
        for i in range(1, size):
            r += 2 * LANES
            best, best_at = _wins_into(vload(rows, r), vload(rows, r + LANES), best, best_at)
        _store_outputs(ys, ats, out + p * pitch, best, best_at, p < P - 1 or last_lanes >= LANES, keep_last)


@njit(cache=True, nogil=True, inline="always")
def _wide_row_vector(r, q0, r1, Q, HW, planes):
    """Rows of more than 8 outputs: the vector of outputs q0 .. q0+15 of plane r's rows. Returns
    (na, nb, ahead, last_lanes): valid outputs in each half, the plane to prefetch (< 0: none), and
    how many lanes the plane's last row may write (whole vectors run on into the next rows, which
    are written after them: a plane's columns of vectors go right to left, its rows downwards, the
    planes in turn; only the task's very last vector is cut, what follows it belongs to another
    task or to nothing)."""
    na, nb = min(HALF, Q - q0), max(0, min(HALF, Q - q0 - HALF))
    ahead = (r + 1) * HW if q0 == 0 and r + 1 < planes else -1
    return na, nb, ahead, LANES if r + 1 < r1 else Q - q0


@njit(cache=True, nogil=True, inline="always")
def _prefetchable_planes(xs, HW):
    """Planes that may be prefetched (all, when a plane fits PREFETCH_MAX_PLANE; else none)."""
    return xs.size // HW if HW <= PREFETCH_MAX_PLANE else 0


@njit(cache=True, nogil=True, inline="always")
def _pair_copies(ys, ats, ysc, asc, ra, r1, PQ, P, Q):
    """Rows of two planes side by side in each vector (lanes 0-7, 8-15, Q <= 8), written whole into
    scratch rows of 16: copied out to planes ra and ra+1 (if it is one of the task's)."""
    _copy_out(ys, ats, ra * PQ, ysc, asc, 0, LANES, P, Q)
    if ra + 1 < r1:
        _copy_out(ys, ats, (ra + 1) * PQ, ysc, asc, HALF, LANES, P, Q)


# Two drivers, one per vector kernel, each in its own parallel function below: Numba compiles
# every callee of a function, so one driver for both windows compiled the any-window kernel for
# the network's 3x3 pooling too (the 3x3 function alone: 4.2 s of compiling against 7.2 s).
@njit(cache=True, nogil=True)
def _pool_planes_3x3(ys, ats, xs, H, W, P, Q, r0, r1):
    """Planes r0 .. r1-1 (flat views), window 3, stride 2. Rows of more than 8 outputs fill
    vectors with 16 outputs of one row; shorter rows (pool5's 6), one vector with a row of each of
    two planes. While small planes are pooled, the next ones' rows are prefetched.

    Same result as the reference, ties and NaN included: the reference's winner is the first
    element, in row-major order, of the window's maximum (or its first NaN); the row maxima find
    the first such element of each window row, and the pass down the rows the first row that has
    one."""
    HW, PQ = H * W, P * Q
    planes = _prefetchable_planes(xs, HW)
    if Q > HALF:
        for r in range(r0, r1):
            for q0 in range((Q - 1) // LANES * LANES, -1, -LANES):
                na, nb, ahead, last_lanes = _wide_row_vector(r, q0, r1, Q, HW, planes)
                _pool_vector_3x3(ys, ats, r * PQ + q0, Q, last_lanes, xs, W, P, r * HW, q0, na, r * HW, q0 + HALF, nb,
                                 ahead, -1, True)
    else:
        ysc, asc = np.empty(P * LANES, dtype=np.float32), np.empty(P * LANES, dtype=np.int32)
        for ra in range(r0, r1, 2):
            ahead_a = (ra + 2) * HW if ra + 2 < planes else -1
            ahead_b = (ra + 3) * HW if ra + 3 < planes else -1
            _pool_vector_3x3(ysc, asc, 0, LANES, LANES, xs, W, P, ra * HW, 0, Q, min(ra + 1, r1 - 1) * HW, 0,
                             Q if ra + 1 < r1 else 0, ahead_a, ahead_b, False)
            _pair_copies(ys, ats, ysc, asc, ra, r1, PQ, P, Q)


@njit(cache=True, nogil=True)
def _pool_planes_stride2(ys, ats, xs, size, H, W, P, Q, r0, r1):
    """As `_pool_planes_3x3` for any window (`_pool_vector_any`; no prefetching)."""
    HW, PQ = H * W, P * Q
    rows = np.empty((2 * (P - 1) + size) * 2 * LANES, dtype=np.float32)
    if Q > HALF:
        for r in range(r0, r1):
            for q0 in range((Q - 1) // LANES * LANES, -1, -LANES):
                na, nb, _, last_lanes = _wide_row_vector(r, q0, r1, Q, HW, 0)
                _pool_vector_any(ys, ats, r * PQ + q0, Q, last_lanes, xs, rows, size, W, P, r * HW, q0, na, r * HW,
                                 q0 + HALF, nb, True)
    else:
        ysc, asc = np.empty(P * LANES, dtype=np.float32), np.empty(P * LANES, dtype=np.int32)
        for ra in range(r0, r1, 2):
            _pool_vector_any(ysc, asc, 0, LANES, LANES, xs, rows, size, W, P, ra * HW, 0, Q, min(ra + 1, r1 - 1) * HW,
                             0, Q if ra + 1 < r1 else 0, False)
            _pair_copies(ys, ats, ysc, asc, ra, r1, PQ, P, Q)


# The forward paths are separate parallel functions: Numba compiles a function whole, so one
# function holding them all compiled the paths the network never takes as well.
@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_forward_3x3s2(ys, ats, xs, H, W, P, Q):
    NC = xs.size // (H * W)
    for t in prange((NC + PLANES_PER_TASK - 1) // PLANES_PER_TASK):
        r0 = t * PLANES_PER_TASK
        _pool_planes_3x3(ys, ats, xs, H, W, P, Q, r0, min(NC, r0 + PLANES_PER_TASK))


@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_forward_stride2(ys, ats, xs, size, H, W, P, Q):
    NC = xs.size // (H * W)
    for t in prange((NC + PLANES_PER_TASK - 1) // PLANES_PER_TASK):
        r0 = t * PLANES_PER_TASK
        _pool_planes_stride2(ys, ats, xs, size, H, W, P, Q, r0, min(NC, r0 + PLANES_PER_TASK))


@njit(parallel=True, cache=True, nogil=True)
def _maxpool2d_forward_planes(y, argmax, x, size, stride):
    for r in prange(x.shape[0]):
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
    if size == 3 and stride == 2 and H * W < FLOAT_EXACT_INTS:
        _maxpool2d_forward_3x3s2(y.reshape(-1), argmax.reshape(-1), x.reshape(-1), H, W, P, Q)
    elif stride == 2 and H * W < FLOAT_EXACT_INTS:
        _maxpool2d_forward_stride2(y.reshape(-1), argmax.reshape(-1), x.reshape(-1), size, H, W, P, Q)
    else:
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
