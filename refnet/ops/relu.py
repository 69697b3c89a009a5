"""ReLU: y = max(x, 0); backward dx = dy * (y > 0), taken from the output y."""

import importlib

from ..device import backend_of
from ._checks import check_array, check_same_backend, output_or_new


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.relu")


def relu_forward(x, out=None):
    """y = max(x, 0) for a float32 C-contiguous x of any shape. `out`: the y array to write."""
    check_array("x", x)
    check_same_backend(x=x, out=out)
    y = output_or_new("out", out, x.shape, x.dtype, like=x)
    _kernels(x).relu_forward(y, x)
    return y


def relu_backward(y, dy, out=None):
    """dx = dy where y > 0, else 0; y is the forward's output. `out`: the dx array to write."""
    check_array("y", y)
    check_array("dy", dy, shape=tuple(y.shape))
    check_same_backend(y=y, dy=dy, out=out)
    dx = output_or_new("out", out, y.shape, y.dtype, like=y)
    _kernels(y).relu_backward(dx, y, dy)
    return dx
