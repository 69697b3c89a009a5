"""2-D max pooling without padding (the paper's 3x3 stride-2 overlapping pooling by default).

argmax holds, per output, the flat index h*W + w of the winning input inside its (n, c) plane;
ties go to the first maximum in row-major window order. The backward adds up the gradients of
every window a position won (overlapping windows can share a winner).
"""

import importlib

import numpy as np

from ..device import backend_of
from ._checks import check_array, check_same_backend, output_or_new
from ._outputs import output_pair
from ._pooling import check_input_shape, pooled_shape


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.maxpool2d")


def maxpool2d_forward(x, size=3, stride=2, out=None):
    """(y, argmax) for x (N, C, H, W) float32; both (N, C, (H-size)//stride+1, (W-size)//stride+1),
    argmax int32. `out`: (y, argmax) arrays to write."""
    check_array("x", x, ndim=4)
    shape = pooled_shape(x.shape, size, stride)
    out_y, out_argmax = output_pair(out, "y", "argmax")
    check_same_backend(x=x, out_y=out_y, out_argmax=out_argmax)
    y = output_or_new("out[0] (y)", out_y, shape, np.float32, like=x)
    argmax = output_or_new("out[1] (argmax)", out_argmax, shape, np.int32, like=x)
    _kernels(x).maxpool2d_forward(y, argmax, x, int(size), int(stride))
    return y, argmax


def maxpool2d_backward(dy, argmax, input_shape, out=None):
    """dx of shape input_shape (N, C, H, W): dy (N, C, P, Q) routed to argmax, summed where windows
    overlap. `out`: the dx array to write."""
    check_array("dy", dy, ndim=4)
    check_array("argmax", argmax, dtype=np.int32, shape=tuple(dy.shape))
    input_shape = check_input_shape(input_shape, dy.shape)
    check_same_backend(dy=dy, argmax=argmax, out=out)
    dx = output_or_new("out", out, input_shape, np.float32, like=dy)
    out_of_plane = _kernels(dy).maxpool2d_backward(dx, dy, argmax)
    if out_of_plane:
        H, W = input_shape[2:]
        raise ValueError(
            f"argmax: expected flat indices in [0, {H * W}) for input planes of {H}x{W}, "
            f"got {out_of_plane} entries outside that range"
        )
    return dx
