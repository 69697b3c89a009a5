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

    pass             M (rows)   N (columns)      K (reduction)    A            B
    forward          K/G        N*P*Q            C/G*R*S          w            x gathered
    backward data    C/G        N*H*W            K/G*R*S          w regathered dy gathered from the outputs covering each pixel
    backward filter  K/G        C/G*R*S          N*P*Q            dy           x gathered

Backward filter reduces over the whole batch with few output tiles, so it is split over K
(deterministic partial sums, see `_tiled`). The bias gradient is a per-channel tree reduction.
The *_reference launchers are the simple kernels the fast path is tested against: one thread per
output element, the formula as plain loops.
"""

import numpy as np
from numba import cuda, float32, int32

from . import _tiled
from ._grid import elementwise_grid, unflatten3, unflatten4
from ._reduce import channel_sum

# geom = (N, C, H, W, K, R, S, P, Q, stride, pad, C/G, K/G), all int32; flat indices into
# (C/G, R, S), (K/G, R, S), (N, P, Q) and (N, H, W) are split with unflatten3.


@cuda.jit(device=True, inline=True)
def _image_at(x, geom, n, channel, h, w):
    """x[n, channel, h, w], 0 in the padding."""
    if h < 0 or h >= geom[2] or w < 0 or w >= geom[3]:
        return float32(0.0)
    return x[n, channel, h, w]


# --- forward: y (K/G x N*P*Q) = w (K/G x C/G*R*S) @ gathered x ---------------------------------


@cuda.jit(device=True, inline=True)
def _forward_locate_w(geom, g, m):
    return g * geom[12] + m, int32(0), int32(0)  # the filter's row of w2


@cuda.jit(device=True, inline=True)
def _forward_load_w(w2, geom, g, k, unused1, unused2, kd):
    return w2[k, kd]


@cuda.jit(device=True, inline=True)
def _forward_locate_x(geom, g, col):
    """Output pixel col = (n, p, q) -> (n, top row, left column) of its window in x."""
    n, p, q = unflatten3(col, geom[7], geom[8])
    stride, pad = geom[9], geom[10]
    return n, p * stride - pad, q * stride - pad


@cuda.jit(device=True, inline=True)
def _forward_load_x(x, geom, g, n, h0, w0, kd):
    c, r, s = unflatten3(kd, geom[5], geom[6])
    return _image_at(x, geom, n, g * geom[11] + c, h0 + r, w0 + s)


@cuda.jit(device=True, inline=True)
def _forward_store(y, bias, geom, g, m, col, value, alpha, beta):
    n, p, q = unflatten3(col, geom[7], geom[8])
    k = g * geom[12] + m
    y[n, k, p, q] = value + bias[k]


# --- backward data: dx (C/G x N*H*W) = w^T (C/G x K/G*R*S) @ dy gathered ----------------------


@cuda.jit(device=True, inline=True)
def _data_locate_w(geom, g, c):
    return c, int32(0), int32(0)


@cuda.jit(device=True, inline=True)
def _data_load_w(w3, geom, g, c, unused1, unused2, kd):
    RS = geom[5] * geom[6]
    kk = kd // RS
    return w3[g * geom[12] + kk, c, kd - kk * RS]


@cuda.jit(device=True, inline=True)
def _data_locate_dy(geom, g, col):
    """Input pixel col = (n, h, w) -> (n, h + pad, w + pad)."""
    n, h, w = unflatten3(col, geom[2], geom[3])
    return n, h + geom[10], w + geom[10]


@cuda.jit(device=True, inline=True)
def _data_load_dy(dy, geom, g, n, h_padded, w_padded, kd):
    P, Q, stride = geom[7], geom[8], geom[9]
    kk, r, s = unflatten3(kd, geom[5], geom[6])
    # (h, w) is tap (r, s) of output (p, q) iff h + pad - r = p*stride and w + pad - s = q*stride
    ph = h_padded - r
    qw = w_padded - s
    if ph < 0 or qw < 0:
        return float32(0.0)
    if stride == 1:  # conv2-5: no division
        p, q = ph, qw
    else:
        p = ph // stride
        q = qw // stride
        if ph - p * stride != 0 or qw - q * stride != 0:
            return float32(0.0)
    if p >= P or q >= Q:
        return float32(0.0)
    return dy[n, g * geom[12] + kk, p, q]


@cuda.jit(device=True, inline=True)
def _data_store(dx, bias, geom, g, m, col, value, alpha, beta):
    n, h, w = unflatten3(col, geom[2], geom[3])
    dx[n, g * geom[11] + m, h, w] = value


# --- backward filter: dw (K/G x C/G*R*S) = dy (K/G x N*P*Q) @ gathered x^T ---------------------


@cuda.jit(device=True, inline=True)
def _filter_locate_dy(geom, g, m):
    return g * geom[12] + m, int32(0), int32(0)  # the filter's channel of dy


@cuda.jit(device=True, inline=True)
def _filter_load_dy(dy3, geom, g, k, unused1, unused2, kd):
    PQ = geom[7] * geom[8]
    n = kd // PQ
    return dy3[n, k, kd - n * PQ]


@cuda.jit(device=True, inline=True)
def _filter_locate_x(geom, g, col):
    """Filter tap col = (c, r, s) -> (input channel, r - pad, s - pad)."""
    c, r, s = unflatten3(col, geom[5], geom[6])
    pad = geom[10]
    return g * geom[11] + c, r - pad, s - pad


@cuda.jit(device=True, inline=True)
def _filter_load_x(x, geom, g, channel, r_shift, s_shift, kd):
    n, p, q = unflatten3(kd, geom[7], geom[8])
    stride = geom[9]
    return _image_at(x, geom, n, channel, p * stride + r_shift, q * stride + s_shift)


@cuda.jit(device=True, inline=True)
def _filter_store(dw2, bias, geom, g, m, col, value, alpha, beta):
    dw2[g * geom[12] + m, col] = value


_FORWARD = _tiled.make_tiled_matmul(
    _forward_locate_w, _forward_load_w, _forward_locate_x, _forward_load_x, _forward_store, a_k_fastest=True, b_k_fastest=False
)
_DATA = _tiled.make_tiled_matmul(
    _data_locate_w, _data_load_w, _data_locate_dy, _data_load_dy, _data_store, a_k_fastest=True, b_k_fastest=False
)
_FILTER = _tiled.make_tiled_matmul(
    _filter_locate_dy, _filter_load_dy, _filter_locate_x, _filter_load_x, _filter_store, a_k_fastest=True, b_k_fastest=True
)

def _geometry(x, w, stride, pad, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P = (H + 2 * pad - R) // stride + 1
    Q = (W + 2 * pad - S) // stride + 1
    return (N, C, H, W, K, R, S, P, Q, stride, pad, Cg, K // groups)


def conv2d_forward(y, x, w, b, stride, pad, groups):
    geom = _geometry(x, w, stride, pad, groups)
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom
    _tiled.launch(
        _FORWARD, y, w.reshape(K, Cg * R * S), x, _tiled.bias_or_zeros(b, K), geom, Kg, N * P * Q, Cg * R * S, groups
    )


def conv2d_backward(dx, dw, db, x, w, dy, stride, pad, groups):
    geom = _geometry(x, w, stride, pad, groups)
    N, C, H, W, K, R, S, P, Q, stride, pad, Cg, Kg = geom
    if dx is not None:
        _tiled.launch(_DATA, dx, w.reshape(K, Cg, R * S), dy, dx, geom, Cg, N * H * W, Kg * R * S, groups)
    _tiled.launch(_FILTER, dw.reshape(K, Cg * R * S), dy.reshape(N, K, P * Q), x, dw, geom, Kg, Cg * R * S, N * P * Q, groups)
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
    return tuple(np.int32(v) for v in _geometry(x, w, stride, pad, groups))


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
