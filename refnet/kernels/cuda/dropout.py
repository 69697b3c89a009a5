"""Dropout on the GPU, with the paper's test-time semantics (Krizhevsky et al. 2012, section 4.2).

    train:    y = x * mask           mask[i] = 0 with probability p, 1 otherwise (no 1/(1-p) scaling)
    test:     y = x * (1 - p)        the expected value of the training output
    backward: dx = dy * mask

Layout: x, y, dx, dy float32 device arrays of any shape, C-contiguous; mask uint8 of the same shape
(1 kept, 0 dropped). The kernels see flat views; element i is the i-th element in C order.

The mask is not drawn from a stateful device RNG: element i is kept iff `keep_unit(seed, i,
drop_threshold)`, the counter-based hash defined (as plain Python) in refnet/kernels/cpu/dropout.py
and compiled here as a device function, so a seed gives the CPU's mask bit for bit. One thread per
element, coalesced, grid-stride.
"""

import numpy as np
from numba import cuda, float32, uint8

from ..cpu.dropout import drop_threshold_for, keep_unit
from ._grid import elementwise_grid

_keep_unit = cuda.jit(device=True, inline=True)(keep_unit)


@cuda.jit
def _dropout_forward_flat(y, mask, x, seed, drop_threshold):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        keep = _keep_unit(seed, np.uint64(i), drop_threshold)
        mask[i] = uint8(1) if keep else uint8(0)
        y[i] = x[i] * (float32(1.0) if keep else float32(0.0))


@cuda.jit
def _scale_flat(y, x, factor):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        y[i] = x[i] * factor


@cuda.jit
def _dropout_backward_flat(dx, dy, mask):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, dy.size, step):
        dx[i] = dy[i] * float32(mask[i])


def dropout_forward(y, mask, x, p, seed):
    """Training: mask from (seed, flat index), y = x * mask. p in [0, 1), seed in [0, 2**64)."""
    blocks, threads = elementwise_grid(x.size)
    _dropout_forward_flat[blocks, threads](
        y.reshape(-1), mask.reshape(-1), x.reshape(-1), np.uint64(seed), drop_threshold_for(p)
    )


def dropout_eval(y, x, p):
    """Test time: y = x * (1 - p), the factor rounded once to float32."""
    blocks, threads = elementwise_grid(x.size)
    _scale_flat[blocks, threads](y.reshape(-1), x.reshape(-1), np.float32(1.0 - p))


def dropout_backward(dx, dy, mask):
    """dx = dy * mask."""
    blocks, threads = elementwise_grid(dy.size)
    _dropout_backward_flat[blocks, threads](dx.reshape(-1), dy.reshape(-1), mask.reshape(-1))
