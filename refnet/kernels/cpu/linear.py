"""Fully connected layer on the CPU.

    forward:   y[n, o]  = sum_i x[n, i] * w[o, i] + b[o]        y = x @ w.T + b
    backward:  dx[n, i] = sum_o dy[n, o] * w[o, i]              dx = dy @ w
               dw[o, i] = sum_n dy[n, o] * x[n, i]              dw = dy.T @ x
               db[o]    = sum_n dy[n, o]
Layouts (float32, C-contiguous): x, dx (N, IN); w, dw (OUT, IN); b, db (OUT,); y, dy (N, OUT).
Backward writes dx, dw, db (nothing accumulates); dx is skipped when None.

The three products run on the packed GEMM of `gemm.py`, the forward transposed, y^T = W x^T, so
that W's rows are read in place (`gemm_rows_a`) into a scratch y^T then copied into y;
`linear_forward_naive` and `linear_backward_naive` are the plain loops they are tested against.
"""

import numpy as np
from numba import njit, prange

from .gemm import UNIT_STRIDE, gemm_rows_a, gemm_strided, transpose_into

# Output columns per parallel task of the bias kernels.
COLUMN_BLOCK = 256


@njit(cache=True, nogil=True)
def _fill_columns_with_bias(yt, b):
    """yt[o, n] = b[o]: the transposed output, before the GEMM adds x @ w.T to it (one thread: a
    few hundred KB)."""
    OUT, N = yt.shape
    for o in range(OUT):
        for n in range(N):
            yt[o, n] = b[o]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _sum_over_rows(db, dy):
    """db[o] = sum_n dy[n, o]; one task per block of columns, rows added in order n = 0, 1, ..."""
    N, OUT = dy.shape
    for t in prange((OUT + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        o0 = t * COLUMN_BLOCK
        o1 = min(OUT, o0 + COLUMN_BLOCK)
        for o in range(o0, o1):
            db[o] = np.float32(0.0)
        for n in range(N):
            for o in range(o0, o1):
                db[o] += dy[n, o]


def linear_forward(y, x, w, b):
    """y = x @ w.T + b."""
    N, IN = x.shape
    OUT = w.shape[0]
    yt = np.empty((OUT, N), dtype=np.float32)
    _fill_columns_with_bias(yt, b)
    # The bias first, the products added to it K slice by K slice.
    gemm_rows_a(yt.reshape(-1), N, w.reshape(-1), IN, x.reshape(-1), UNIT_STRIDE, np.int64(IN),
                OUT, N, IN, np.float32(1.0), np.float32(1.0))
    transpose_into(y, yt)


def linear_backward(dx, dw, db, x, w, dy):
    """dx = dy @ w (skipped when dx is None), dw = dy.T @ x, db = sum of dy's rows."""
    N, IN = x.shape
    OUT = w.shape[0]
    one, zero = np.float32(1.0), np.float32(0.0)
    if dx is not None:
        gemm_strided(dx.reshape(-1), IN, dy.reshape(-1), OUT, False, w.reshape(-1), IN, False,
                     N, IN, OUT, one, zero)
    gemm_strided(dw.reshape(-1), IN, dy.reshape(-1), OUT, True, x.reshape(-1), IN, False,
                 OUT, IN, N, one, zero)
    _sum_over_rows(db, dy)


@njit(cache=True, nogil=True)
def linear_forward_naive(y, x, w, b):
    """Same contract as `linear_forward`; plain loops."""
    N, IN = x.shape
    OUT = w.shape[0]
    for n in range(N):
        for o in range(OUT):
            total = b[o]
            for i in range(IN):
                total += x[n, i] * w[o, i]
            y[n, o] = total


@njit(cache=True, nogil=True)
def linear_backward_naive(dx, dw, db, x, w, dy):
    """Same contract as `linear_backward`; plain loops (dx is always computed)."""
    N, IN = x.shape
    OUT = w.shape[0]
    for n in range(N):
        for i in range(IN):
            total = np.float32(0.0)
            for o in range(OUT):
                total += dy[n, o] * w[o, i]
            dx[n, i] = total
    for o in range(OUT):
        for i in range(IN):
            total = np.float32(0.0)
            for n in range(N):
                total += dy[n, o] * x[n, i]
            dw[o, i] = total
        total = np.float32(0.0)
        for n in range(N):
            total += dy[n, o]
        db[o] = total
