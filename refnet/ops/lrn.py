"""Local response normalisation across channels, the paper's formula (section 3.3):

    y_c = x_c / (k + alpha * sum_{c'=max(0,c-size//2)}^{min(C-1,c+size//2)} x_c'^2)^beta

alpha is NOT divided by size. Caffe, PyTorch and cuDNN divide theirs, so to reproduce this layer
there pass alpha * size (the paper's layer is torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)).
The forward also returns `scale` = k + alpha * sum(x^2) over the window, which the backward needs.
"""

import importlib

from ..device import backend_of
from ._checks import check_array, check_finite_float, check_positive_int, check_same_backend, output_or_new
from ._outputs import output_pair


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.lrn")


def _check_hyperparameters(size, alpha, beta, k):
    size = check_positive_int("size", size)
    if size % 2 == 0:
        raise ValueError(f"size: expected an odd window (channels c-size//2 .. c+size//2), got {size}")
    alpha = check_finite_float("alpha", alpha, minimum=0.0)
    beta = check_finite_float("beta", beta, minimum=0.0)
    k = check_finite_float("k", k)
    if k <= 0.0:
        raise ValueError(f"k: expected > 0 (so that scale >= k never reaches 0), got {k}")
    return size, alpha, beta, k


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0, out=None):
    """(y, scale) for x (N, C, H, W) float32, both of x's shape. `out`: (y, scale) arrays to write."""
    check_array("x", x, ndim=4)
    size, alpha, beta, k = _check_hyperparameters(size, alpha, beta, k)
    out_y, out_scale = output_pair(out, "y", "scale")
    check_same_backend(x=x, out_y=out_y, out_scale=out_scale)
    y = output_or_new("out[0] (y)", out_y, x.shape, x.dtype, like=x)
    scale = output_or_new("out[1] (scale)", out_scale, x.shape, x.dtype, like=x)
    _kernels(x).lrn_forward(y, scale, x, size, alpha, beta, k)
    return y, scale


def lrn_backward(x, y, scale, dy, size=5, alpha=1e-4, beta=0.75, k=2.0, out=None):
    """dx (N, C, H, W) from the forward's x, y, scale and dy, all of one shape; the exact gradient.
    `out`: the dx array to write."""
    check_array("x", x, ndim=4)
    shape = tuple(x.shape)
    check_array("y", y, shape=shape)
    check_array("scale", scale, shape=shape)
    check_array("dy", dy, shape=shape)
    size, alpha, beta, k = _check_hyperparameters(size, alpha, beta, k)
    check_same_backend(x=x, y=y, scale=scale, dy=dy, out=out)
    dx = output_or_new("out", out, shape, x.dtype, like=x)
    _kernels(x).lrn_backward(dx, x, y, scale, dy, size, alpha, beta, k)
    return dx
