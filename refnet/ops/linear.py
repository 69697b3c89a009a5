"""Fully connected layer: y = x @ w.T + b with x (N, IN), w (OUT, IN), b (OUT,), y (N, OUT).

The backward writes dx = dy @ w (N, IN), dw = dy.T @ x (OUT, IN) and db = dy summed over the
batch (OUT,); dx is skipped (returned as None) when need_dx is False, as for a first layer.
"""

import importlib

import numpy as np

from ..device import backend_of
from ._checks import check_array, check_same_backend, output_or_new
from ._weight_gradients import gradient_outputs


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.linear")


def _check_weights(x, w):
    check_array("x", x, ndim=2)
    check_array("w", w, ndim=2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w: expected (OUT, IN) with IN = {x.shape[1]} (x's columns), got shape {tuple(w.shape)}")
    if min(x.shape) < 1 or w.shape[0] < 1:
        raise ValueError(f"x, w: expected non-empty arrays, got x {tuple(x.shape)} and w {tuple(w.shape)}")
    return x.shape[0], x.shape[1], w.shape[0]


def linear_forward(x, w, b, out=None):
    """y (N, OUT) = x (N, IN) @ w (OUT, IN).T + b (OUT,). `out`: the y array to write."""
    N, _, OUT = _check_weights(x, w)
    check_array("b", b, shape=(OUT,))
    check_same_backend(x=x, w=w, b=b, out=out)
    y = output_or_new("out", out, (N, OUT), np.float32, like=x)
    _kernels(x).linear_forward(y, x, w, b)
    return y


def linear_backward(x, w, dy, need_dx=True, out=None):
    """(dx, dw, db) for the forward's x, w and the output gradient dy (N, OUT).

    dx is None when need_dx is False. `out`: (dx, dw, db) arrays to write (dx None if not needed).
    """
    N, IN, OUT = _check_weights(x, w)
    check_array("dy", dy, shape=(N, OUT))
    dx, dw, db = gradient_outputs(out, need_dx, x, w, dy)
    _kernels(x).linear_backward(dx, dw, db, x, w, dy)
    return dx, dw, db
