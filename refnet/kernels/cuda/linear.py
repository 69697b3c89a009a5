"""Fully connected layer on the GPU.

    forward:  y = x @ w.T + b          y[i, o] = b[o] + sum_j x[i, j] * w[o, j]
    backward: dx = dy @ w              (skipped when dx is None)
              dw = dy.T @ x
              db[o] = sum_i dy[i, o]

Layout: x, dx (N, F_in); w, dw (F_out, F_in); b, db (F_out,) (b and db may be None: no bias); y, dy (N, F_out). float32,
C-contiguous device arrays.

All three products run on the tiled GEMM kernels (`gemm`, `_tiled`); the forward adds the bias in
the GEMM's store, so y is written once. db is a per-column tree reduction.
"""

from numba import cuda

from . import _tiled
from ._reduce import channel_sum
from .gemm import gemm, make_gemm_kernels


@cuda.jit(device=True, inline=True)
def _store_plus_bias(y, bias, geom, g, m, n, at, value, alpha, beta):
    y[at] = value + bias[n]


_FORWARD = make_gemm_kernels(trans_a=False, trans_b=True, store=_store_plus_bias)


def linear_forward(y, x, w, b):
    """y (N, F_out) = x (N, F_in) @ w.T + b."""
    N, F_in = x.shape
    F_out = w.shape[0]
    _tiled.launch(_FORWARD, y, x, w, _tiled.bias_or_zeros(b, F_out), (N, F_out, F_in), N, F_out, F_in, 1)


def linear_backward(dx, dw, db, x, w, dy):
    """dx = dy @ w (unless dx is None), dw = dy.T @ x, db = column sums of dy."""
    if dx is not None:
        gemm(dx, dy, w, False, False, 1.0, 0.0)
    gemm(dw, dy, x, True, False, 1.0, 0.0)
    if db is not None:
        N, F_out = dy.shape
        channel_sum(db, dy.reshape(N, F_out, 1))
