"""GEMM on the GPU:  c = alpha * op(a) @ op(b) + beta * c   (c is not read when beta == 0).

    op(a) = a (M, K) or a.T with a stored (K, M) when trans_a
    op(b) = b (K, N) or b.T with b stored (N, K) when trans_b
    c     (M, N)
All float32, C-contiguous device arrays.

`gemm` runs the register-blocked shared-memory kernel of `_tiled` (one compiled variant per
transpose case: a row-major operand is copied along k ("rows"), a transposed one along i ("cols"),
so the copy into shared memory is coalesced either way). `gemm_reference` is the simple kernel it
is tested against: one thread per element of c, a plain loop over K.
"""

import math

import numpy as np
from numba import cuda, float32, int32

from . import _tiled

# geom = (M, N, K) as int32


@cuda.jit(device=True, inline=True)
def _a_row(geom, g, m):
    return int32(m * geom[2]), int32(0), int32(0)  # a (M, K): row m starts at m*K


@cuda.jit(device=True, inline=True)
def _b_row(geom, g, n):
    return int32(n * geom[2]), int32(0), int32(0)  # b (N, K): row n starts at n*K


@cuda.jit(device=True, inline=True)
def _column(geom, g, i):
    return i, int32(0), int32(0)  # a (K, M) or b (K, N): element (i, k) at i + k*width


@cuda.jit(device=True, inline=True)
def _k_step(geom):
    return geom[2]


@cuda.jit(device=True, inline=True)
def _a_width(geom):
    return geom[0]


@cuda.jit(device=True, inline=True)
def _b_width(geom):
    return geom[1]


@cuda.jit(device=True, inline=True)
def c_row(geom, g, m):
    return int32(m * geom[1])


@cuda.jit(device=True, inline=True)
def c_col(geom, g, n):
    return n


@cuda.jit(device=True, inline=True)
def _store_alpha_beta(c, bias, geom, g, m, n, at, value, alpha, beta):
    if beta == float32(0.0):
        c[at] = alpha * value
    else:
        c[at] = alpha * value + beta * c[at]


def make_gemm_kernels(trans_a, trans_b, store=_store_alpha_beta):
    """The tiled kernels for one transpose case, writing each element of c through `store`
    (alpha/beta by default; linear's adds a bias)."""
    a = _tiled.Operand("cols", _column, _a_width) if trans_a else _tiled.Operand("rows", _a_row, _k_step)
    b = _tiled.Operand("rows", _b_row, _k_step) if trans_b else _tiled.Operand("cols", _column, _b_width)
    return _tiled.make_tiled_matmul(a, b, c_row, c_col, store)


_KERNELS = {}


def _kernels(trans_a, trans_b):
    key = (bool(trans_a), bool(trans_b))
    if key not in _KERNELS:
        _KERNELS[key] = make_gemm_kernels(*key)
    return _KERNELS[key]


def _sizes(c, a, trans_a):
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    return M, N, K


def gemm(c, a, b, trans_a, trans_b, alpha, beta, splits=None):
    M, N, K = _sizes(c, a, trans_a)
    _tiled.launch(_kernels(trans_a, trans_b), c, a, b, c, (M, N, K), M, N, K, 1, alpha, beta, splits=splits)


@cuda.jit
def _gemm_reference_kernel(c, a, b, trans_a, trans_b, alpha, beta, K):
    m, n = cuda.grid(2)
    if m >= c.shape[0] or n >= c.shape[1]:
        return
    total = float32(0.0)
    for k in range(K):
        a_mk = a[k, m] if trans_a else a[m, k]
        b_kn = b[n, k] if trans_b else b[k, n]
        total += a_mk * b_kn
    if beta == float32(0.0):
        c[m, n] = alpha * total
    else:
        c[m, n] = alpha * total + beta * c[m, n]


def gemm_reference(c, a, b, trans_a, trans_b, alpha, beta):
    """Same contract as `gemm`; one thread per element of c."""
    M, N, K = _sizes(c, a, trans_a)
    block = (16, 16)
    grid = (math.ceil(M / block[0]), math.ceil(N / block[1]))
    _gemm_reference_kernel[grid, block](
        c, a, b, bool(trans_a), bool(trans_b), np.float32(alpha), np.float32(beta), np.int32(K)
    )
