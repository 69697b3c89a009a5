"""2-D convolution (cross-correlation) on the GPU, with zero padding, stride and groups.

    y[n, k, p, q] = b[k] + sum_{c < C/G, r < R, s < S} w[k, c, r, s] * x[n, g*C/G + c, p*stride - pad + r, q*stride - pad + s]
                    where g = k // (K/G) is k's group and x is 0 outside the image
    dx[n, g*C/G + c, h, w] = sum over k in group g, r, s with h = p*stride - pad + r, w = q*stride - pad + s
                             of w[k, c, r, s] * dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x[n, g*C/G + c, p*stride - pad + r, q*stride - pad + s]
    db[k]          = sum_{n, p, q} dy[n, k, p, q]

Layout: x, dx (N, C, H, W); w, dw (K, C/G, R, S); b, db (K,); y, dy (N, K, P, Q) with
P = (H + 2*pad - R)//stride + 1, Q = (W + 2*pad - S)//stride + 1. float32, C-contiguous device
arrays. b may be None (no bias); dx may be None (skip the data gradient, e.g. for the first layer).

Fast path: implicit GEMM on the tiled, register-blocked kernel of `_tiled` (no im2col buffer: the
tile copy gathers straight from the image), one launch per pass with the groups on blockIdx.z:

    pass             M (rows)   N (columns)      K (reduction)    A                     B
    forward          K/G        N*P*Q            C/G*R*S          w ("rows")            x gathered ("gather")
    backward data    C/G        N*H*W            K/G*R*S          w ("table_rows")      dy gathered ("gather")
    backward filter  K/G        C/G*R*S          N*P*Q            dy ("table_rows")     x gathered ("gather")

Every address is (a part fixed by the row or column, decoded once per thread with 32-bit division)
+ (a part fixed by k, read from an int32 table the host builds once per geometry, cuDNN-style
precomputed offsets), so the K loop neither divides nor decodes. A gather table also holds the
window offsets (dh, dw) of each k; the element is read only when (h + dh, w + dw) lies inside.

Backward data with stride > 1: output p covers input row h through tap r iff h + pad - r = p*stride.
Writing h + pad = ph*stride + rh and r = rq*stride + rr, that holds iff rh == rr, with p = ph - rq.
The column keeps h' = ph + (rh << 16), the table dh = -rq - (rr << 16): h' + dh = (ph - rq) +
((rh - rr) << 16) lies in [0, P) exactly when the phases agree and p is in range (sizes < 2**14),
so one unsigned comparison tests both, with no division in the loop (stride 1: rh = rr = 0).

Backward filter reduces over the whole batch with few output tiles, so it is split over K
(deterministic partial sums, see `_tiled`). The bias gradient is a per-channel tree reduction.
The *_reference launchers are the simple kernels the fast path is tested against: one thread per
output element, the formula as plain loops.
"""

import numpy as np
from numba import cuda, float32, int32

from . import _tiled
from ._grid import elementwise_grid, unflatten4
from ._reduce import channel_sum
from ._vector import udiv

# geom = (N, C, H, W, K, R, S, P, Q, stride, pad, C/G, K/G, H*W, P*Q, C/G*R*S, R*S), all int32
_N, _C, _H, _W, _K, _R, _S, _P, _Q, _STRIDE, _PAD, _CG, _KG, _HW, _PQ, _CGRS, _RS = range(17)
MAX_SIDE = 2**14  # the stride-phase packing of backward data needs sizes below 2**16 - R


@cuda.jit(device=True, inline=True)
def _image_at(x, geom, n, channel, h, w):
    """x[n, channel, h, w], 0 in the padding (reference kernels)."""
    if h < 0 or h >= geom[2] or w < 0 or w >= geom[3]:
        return float32(0.0)
    return x[n, channel, h, w]


@cuda.jit(device=True, inline=True)
def _image_limits(geom):
    return geom[_H], geom[_W]


@cuda.jit(device=True, inline=True)
def _output_limits(geom):
    return geom[_P], geom[_Q]


@cuda.jit(device=True, inline=True)
def _split(flat, inner):
    """(flat // inner, flat % inner) in 32 bits."""
    outer = udiv(flat, inner)
    return outer, int32(flat - outer * inner)


# --- forward: y (K/G x N*P*Q) = w (K/G x C/G*R*S) @ gathered x ---------------------------------


@cuda.jit(device=True, inline=True)
def _forward_locate_w(geom, g, m):
    return int32((g * geom[_KG] + m) * geom[_CGRS]), int32(0), int32(0)


@cuda.jit(device=True, inline=True)
def _filter_size(geom):
    return geom[_CGRS]


@cuda.jit(device=True, inline=True)
def _forward_locate_x(geom, g, col):
    """Output pixel col = (n, p, q) -> offset of its window's top-left corner in x, and that corner."""
    n, pq = _split(col, geom[_PQ])
    p, q = _split(pq, geom[_Q])
    h = int32(p * geom[_STRIDE] - geom[_PAD])
    w = int32(q * geom[_STRIDE] - geom[_PAD])
    return int32((n * geom[_C] + g * geom[_CG]) * geom[_HW] + h * geom[_W] + w), h, w


@cuda.jit(device=True, inline=True)
def _forward_row(geom, g, m):
    return int32((g * geom[_KG] + m) * geom[_PQ])


@cuda.jit(device=True, inline=True)
def _forward_col(geom, g, col):
    n, pq = _split(col, geom[_PQ])
    return int32(n * geom[_K] * geom[_PQ] + pq)


@cuda.jit(device=True, inline=True)
def _forward_store(y, bias, geom, g, m, col, at, value, alpha, beta):
    y[at] = value + bias[int32(g * geom[_KG] + m)]


# --- backward data: dx (C/G x N*H*W) = w^T (C/G x K/G*R*S) @ dy gathered ----------------------


@cuda.jit(device=True, inline=True)
def _data_locate_w(geom, g, c):
    return int32(g * geom[_KG] * geom[_CGRS] + c * geom[_RS]), int32(0), int32(0)


@cuda.jit(device=True, inline=True)
def _taps(geom):
    return geom[_RS]


@cuda.jit(device=True, inline=True)
def _data_locate_dy(geom, g, col):
    """Input pixel col = (n, h, w) -> offset in dy and the phase-packed coordinates (docstring)."""
    n, hw = _split(col, geom[_HW])
    h, w = _split(hw, geom[_W])
    ph, rh = _split(int32(h + geom[_PAD]), geom[_STRIDE])
    pw, rw = _split(int32(w + geom[_PAD]), geom[_STRIDE])
    base = int32((n * geom[_K] + g * geom[_KG]) * geom[_PQ] + ph * geom[_Q] + pw)
    return base, int32(ph + (rh << 16)), int32(pw + (rw << 16))


@cuda.jit(device=True, inline=True)
def _data_row(geom, g, m):
    return int32((g * geom[_CG] + m) * geom[_HW])


@cuda.jit(device=True, inline=True)
def _data_col(geom, g, col):
    n, hw = _split(col, geom[_HW])
    return int32(n * geom[_C] * geom[_HW] + hw)


@cuda.jit(device=True, inline=True)
def _plain_store(out, bias, geom, g, m, col, at, value, alpha, beta):
    out[at] = value


# --- backward filter: dw (K/G x C/G*R*S) = dy (K/G x N*P*Q) @ gathered x^T ---------------------


@cuda.jit(device=True, inline=True)
def _filter_locate_dy(geom, g, m):
    return int32((g * geom[_KG] + m) * geom[_PQ]), int32(0), int32(0)


@cuda.jit(device=True, inline=True)
def _plane(geom):
    return geom[_PQ]


@cuda.jit(device=True, inline=True)
def _filter_locate_x(geom, g, col):
    """Filter tap col = (c, r, s) -> offset in x of its reading at output (0, 0), and (r - pad, s - pad)."""
    c, rs = _split(col, geom[_RS])
    r, s = _split(rs, geom[_S])
    h = int32(r - geom[_PAD])
    w = int32(s - geom[_PAD])
    return int32((g * geom[_CG] + c) * geom[_HW] + h * geom[_W] + w), h, w


@cuda.jit(device=True, inline=True)
def _filter_row(geom, g, m):
    return int32((g * geom[_KG] + m) * geom[_CGRS])


@cuda.jit(device=True, inline=True)
def _filter_col(geom, g, col):
    return col


Op = _tiled.Operand
_FORWARD = _tiled.make_tiled_matmul(
    Op("rows", _forward_locate_w, _filter_size), Op("gather", _forward_locate_x, limits=_image_limits),
    _forward_row, _forward_col, _forward_store,
)
_DATA = _tiled.make_tiled_matmul(
    Op("table_rows", _data_locate_w, _taps), Op("gather", _data_locate_dy, limits=_output_limits, vector_table=False),
    _data_row, _data_col, _plain_store, blocks_per_sm=1,  # at 128 registers ptxas spills 8 bytes in the loop
)
_FILTER = _tiled.make_tiled_matmul(
    Op("table_rows", _filter_locate_dy, _plane), Op("gather", _filter_locate_x, limits=_image_limits, vector_table=False),
    _filter_row, _filter_col, _plain_store,
)


def _geometry(x, w, stride, pad, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P = (H + 2 * pad - R) // stride + 1
    Q = (W + 2 * pad - S) // stride + 1
    return (N, C, H, W, K, R, S, P, Q, stride, pad, Cg, K // groups, H * W, P * Q, Cg * R * S, R * S)


# --- the per-k tables, built on the host once per geometry ------------------------------------

_TABLES = {}


def _gather_table(offset, dh, dw):
    """int32 (padded K, 4) rows (offset, dh, dw, 0), padded with rows whose window test fails."""
    table = np.zeros((_tiled.padded_k(offset.size), 4), np.int32)
    table[:, 1:3] = _tiled.OUTSIDE
    table[: offset.size, 0], table[: offset.size, 1], table[: offset.size, 2] = offset, dh, dw
    return table.reshape(-1)


def _row_table(offset):
    table = np.zeros(_tiled.padded_k(offset.size), np.int32)
    table[: offset.size] = offset
    return table


def _tables(kind, geom):
    """The device tables of one pass (cached: a training step rebuilds nothing)."""
    key = (kind, geom)
    if key not in _TABLES:
        N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg, HW, PQ, CgRS, RS = geom
        if kind == "forward":  # k = (c, r, s)
            c, r, s = (a.ravel() for a in np.meshgrid(np.arange(Cg), np.arange(R), np.arange(S), indexing="ij"))
            tables = (None, _gather_table(c * HW + r * W + s, r, s))
        elif kind == "data":  # k = (kk, r, s)
            kk, r, s = (a.ravel() for a in np.meshgrid(np.arange(Kg), np.arange(R), np.arange(S), indexing="ij"))
            rq, rr, sq, sr = r // stride, r % stride, s // stride, s % stride
            tables = (_row_table(kk * CgRS + r * S + s), _gather_table(kk * PQ - rq * Q - sq, -rq - (rr << 16), -sq - (sr << 16)))
        else:  # k = (n, p, q)
            n, p, q = (a.ravel() for a in np.meshgrid(np.arange(N), np.arange(P), np.arange(Q), indexing="ij"))
            tables = (_row_table(n * K * PQ + p * Q + q), _gather_table(n * C * HW + p * stride * W + q * stride, p * stride, q * stride))
        _TABLES[key] = tuple(None if t is None else cuda.to_device(t) for t in tables)
    return _TABLES[key]


def _check_sizes(geom):
    if max(geom[2], geom[3]) >= MAX_SIDE:
        raise ValueError(f"x: images up to {MAX_SIDE - 1} pixels a side on the GPU, got {geom[2]}x{geom[3]}")


def conv2d_forward(y, x, w, b, stride, pad, groups):
    geom = _geometry(x, w, stride, pad, groups)
    _check_sizes(geom)
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom[:13]
    a_table, b_table = _tables("forward", geom)
    _tiled.launch(_FORWARD, y, w, x, _tiled.bias_or_zeros(b, K), geom, Kg, N * P * Q, Cg * R * S, groups,
                  a_table=a_table, b_table=b_table)


def conv2d_backward(dx, dw, db, x, w, dy, stride, pad, groups, splits=None):
    geom = _geometry(x, w, stride, pad, groups)
    _check_sizes(geom)
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom[:13]
    if dx is not None:
        a_table, b_table = _tables("data", geom)
        _tiled.launch(_DATA, dx, w, dy, dx, geom, Cg, N * H * W, Kg * R * S, groups, a_table=a_table, b_table=b_table)
    a_table, b_table = _tables("filter", geom)
    _tiled.launch(_FILTER, dw, dy, x, dw, geom, Kg, Cg * R * S, N * P * Q, groups, splits=splits,
                  a_table=a_table, b_table=b_table)
    if db is not None:
        channel_sum(db, dy.reshape(N, K, P * Q))


# --- reference kernels: one thread per output element ------------------------------------------


@cuda.jit
def _forward_reference_kernel(y, x, w, bias, geom):
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, y.size, step):
        n, k, p, q = unflatten4(flat, K, P, Q)
        g = k // Kg
        total = float32(0.0)
        for c in range(Cg):
            for r in range(R):
                for s in range(S):
                    h, w_ = p * stride - pad + r, q * stride - pad + s
                    total += w[k, c, r, s] * _image_at(x, geom, n, g * Cg + c, h, w_)
        y[n, k, p, q] = total + bias[k]


@cuda.jit
def _data_reference_kernel(dx, w, dy, geom):
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, dx.size, step):
        n, ci, h, w_ = unflatten4(flat, C, H, W)
        g = ci // Cg
        c = ci - g * Cg
        total = float32(0.0)
        for kk in range(Kg):
            k = g * Kg + kk
            for p in range(P):
                for q in range(Q):
                    r = h - p * stride + pad
                    s = w_ - q * stride + pad
                    if 0 <= r < R and 0 <= s < S:
                        total += w[k, c, r, s] * dy[n, k, p, q]
        dx[n, ci, h, w_] = total


@cuda.jit
def _filter_reference_kernel(dw, x, dy, geom):
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, dw.size, step):
        k, c, r, s = unflatten4(flat, Cg, R, S)
        g = k // Kg
        total = float32(0.0)
        for n in range(N):
            for p in range(P):
                for q in range(Q):
                    h, w_ = p * stride - pad + r, q * stride - pad + s
                    total += dy[n, k, p, q] * _image_at(x, geom, n, g * Cg + c, h, w_)
        dw[k, c, r, s] = total


def _int32_geometry(x, w, stride, pad, groups):
    return tuple(np.int32(v) for v in _geometry(x, w, stride, pad, groups)[:13])


def conv2d_forward_reference(y, x, w, b, stride, pad, groups):
    """Same contract as conv2d_forward; one thread per element of y."""
    blocks, threads = elementwise_grid(y.size)
    _forward_reference_kernel[blocks, threads](y, x, w, _tiled.bias_or_zeros(b, w.shape[0]), _int32_geometry(x, w, stride, pad, groups))


def conv2d_backward_reference(dx, dw, db, x, w, dy, stride, pad, groups):
    """Same contract as conv2d_backward; one thread per element of dx and of dw."""
    geom = _int32_geometry(x, w, stride, pad, groups)
    if dx is not None:
        blocks, threads = elementwise_grid(dx.size)
        _data_reference_kernel[blocks, threads](dx, w, dy, geom)
    blocks, threads = elementwise_grid(dw.size)
    _filter_reference_kernel[blocks, threads](dw, x, dy, geom)
    if db is not None:
        N, K, P, Q = dy.shape
        channel_sum(db, dy.reshape(N, K, P * Q))
