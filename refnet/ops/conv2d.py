"""2-D convolution with zero padding, stride and groups (NCHW activations, weights (K, C/groups, R, S)).

    y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*C/groups + c, p*stride - pad + r, q*stride - pad + s]
with g = k // (K/groups) and P = (H + 2*pad - R)//stride + 1, Q = (W + 2*pad - S)//stride + 1.
The backward writes (dx, dw, db); dx is skipped (None) when need_dx is False, as for conv1.
"""

import importlib

import numpy as np

from ..device import backend_of
from ._checks import check_array, check_positive_int, check_same_backend, output_or_new
from ._weight_gradients import gradient_outputs


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.conv2d")


def _check_geometry(x, w, stride, pad, groups):
    """Validate x, w and the hyper-parameters; return (stride, pad, groups, output shape)."""
    check_array("x", x, ndim=4)
    check_array("w", w, ndim=4)
    stride = check_positive_int("stride", stride)
    pad = check_positive_int("pad", pad, minimum=0)
    groups = check_positive_int("groups", groups)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if min(N, C, H, W) < 1 or min(K, Cg, R, S) < 1:
        raise ValueError(f"x, w: expected non-empty arrays, got x {tuple(x.shape)} and w {tuple(w.shape)}")
    if C % groups != 0:
        raise ValueError(f"groups: expected a divisor of x's {C} input channels, got {groups}")
    if K % groups != 0:
        raise ValueError(f"groups: expected a divisor of w's {K} output channels, got {groups}")
    if Cg != C // groups:
        raise ValueError(
            f"w: expected {C // groups} input channels per group (C={C} / groups={groups}) in w's second "
            f"dimension, got shape {tuple(w.shape)}"
        )
    P = (H + 2 * pad - R) // stride + 1
    Q = (W + 2 * pad - S) // stride + 1
    if H + 2 * pad < R or W + 2 * pad < S:
        raise ValueError(
            f"w: expected a {R}x{S} filter no larger than the padded input {H + 2 * pad}x{W + 2 * pad} "
            f"(output size would be < 1), got w of shape {tuple(w.shape)} with pad={pad}"
        )
    return stride, pad, groups, (N, K, P, Q)


def conv2d_forward(x, w, b, stride=1, pad=0, groups=1, out=None):
    """y (N, K, P, Q) for x (N, C, H, W), w (K, C/groups, R, S), b (K,). `out`: the y array to write."""
    stride, pad, groups, y_shape = _check_geometry(x, w, stride, pad, groups)
    check_array("b", b, shape=(w.shape[0],))
    check_same_backend(x=x, w=w, b=b, out=out)
    y = output_or_new("out", out, y_shape, np.float32, like=x)
    _kernels(x).conv2d_forward(y, x, w, b, stride, pad, groups)
    return y


def conv2d_backward(x, w, dy, stride=1, pad=0, groups=1, need_dx=True, out=None):
    """(dx, dw, db) for the forward's x, w and the output gradient dy (N, K, P, Q).

    dx is None when need_dx is False. `out`: (dx, dw, db) arrays to write (dx None if not needed).
    """
    stride, pad, groups, y_shape = _check_geometry(x, w, stride, pad, groups)
    check_array("dy", dy, shape=y_shape)
    dx, dw, db = gradient_outputs(out, need_dx, x, w, dy)
    _kernels(x).conv2d_backward(dx, dw, db, x, w, dy, stride, pad, groups)
    return dx, dw, db
