"""Dropout with the paper's semantics (section 4.2): training zeroes each unit with probability p
and does NOT rescale the survivors; at test time the layer multiplies by (1 - p) instead.

The mask is a counter-based hash of (seed, flat element index) (see refnet/kernels/cpu/dropout.py),
so a given seed gives the same mask on any thread count and on CPU and GPU alike.
"""

import importlib

import numpy as np

from ..device import backend_of
from ._checks import check_array, check_finite_float, check_same_backend, output_or_new
from ._outputs import output_pair

MAX_SEED = (1 << 64) - 1


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.dropout")


def _check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed}")
    return int(seed)


def dropout_forward(x, p, seed, train=True, out=None):
    """Returns (y, mask). train: y = x * mask, mask uint8 (1 kept, 0 dropped with probability p).
    train=False: y = x * (1 - p) and mask is None.

    x: float32 C-contiguous, any shape. p in [0, 1). seed: integer in [0, 2**64).
    `out`: (y, mask) arrays to write; mask may be None when train=False.
    """
    check_array("x", x)
    p = check_finite_float("p", p, minimum=0.0, maximum=1.0, open_max=True)
    seed = _check_seed(seed)
    if not isinstance(train, (bool, np.bool_)):
        raise ValueError(f"train: expected a bool, got {train!r}")
    out_y, out_mask = output_pair(out, "y", "mask")
    check_same_backend(x=x, out_y=out_y, out_mask=out_mask)
    y = output_or_new("out[0] (y)", out_y, x.shape, np.float32, like=x)
    if not train:
        _kernels(x).dropout_eval(y, x, p)
        return y, None
    mask = output_or_new("out[1] (mask)", out_mask, x.shape, np.uint8, like=x)
    _kernels(x).dropout_forward(y, mask, x, p, seed)
    return y, mask


def dropout_backward(dy, mask, out=None):
    """dx = dy * mask; dy float32 and mask uint8 of the same shape. `out`: the dx array to write."""
    check_array("dy", dy)
    check_array("mask", mask, dtype=np.uint8, shape=tuple(dy.shape))
    check_same_backend(dy=dy, mask=mask, out=out)
    dx = output_or_new("out", out, dy.shape, np.float32, like=dy)
    _kernels(dy).dropout_backward(dx, dy, mask)
    return dx
