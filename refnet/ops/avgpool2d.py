"""2-D average pooling without padding; the backward spreads each dy/(size*size) over its window."""

import importlib

import numpy as np

from ..device import backend_of
from ._checks import check_array, check_same_backend, output_or_new
from ._pooling import check_input_shape, pooled_shape


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.avgpool2d")


def avgpool2d_forward(x, size, stride, out=None):
    """y (N, C, (H-size)//stride+1, (W-size)//stride+1): window means of x (N, C, H, W) float32.
    `out`: the y array to write."""
    check_array("x", x, ndim=4)
    shape = pooled_shape(x.shape, size, stride)
    check_same_backend(x=x, out=out)
    y = output_or_new("out", out, shape, np.float32, like=x)
    _kernels(x).avgpool2d_forward(y, x, int(size), int(stride))
    return y


def avgpool2d_backward(dy, input_shape, size, stride, out=None):
    """dx of shape input_shape (N, C, H, W) from dy (N, C, P, Q). `out`: the dx array to write."""
    check_array("dy", dy, ndim=4)
    input_shape = check_input_shape(input_shape, dy.shape)
    expected = pooled_shape(input_shape, size, stride, x_name="input_shape")
    if tuple(dy.shape) != expected:
        raise ValueError(
            f"dy: expected shape {expected} for input_shape {input_shape}, size {size}, stride {stride}, "
            f"got {tuple(dy.shape)}"
        )
    check_same_backend(dy=dy, out=out)
    dx = output_or_new("out", out, input_shape, np.float32, like=dy)
    _kernels(dy).avgpool2d_backward(dx, dy, int(size), int(stride))
    return dx
