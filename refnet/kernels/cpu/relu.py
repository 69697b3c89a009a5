"""ReLU on the CPU.

    forward:  y = max(x, 0)                (NaN passes through: a NaN input is never hidden)
    backward: dx = dy where y > 0, else 0  (uses the output y, so x need not be kept)

Layout: any shape, float32, C-contiguous; y, dx, dy have the shape of x. The kernels see flat
views, so a (N, C, H, W) activation and a (N, F) one run the same compiled code.
"""

import numpy as np
from numba import njit, prange

# Elements per parallel task: large enough to amortise scheduling, small enough to balance 2+ cores.
BLOCK = 1 << 15


# Each task slices its block and loops from 0: LLVM vectorises `for i in range(block.size)` over a
# slice, but not `for i in range(lo, hi)` over the whole array (measured about 6x slower).


@njit(parallel=True, cache=True, nogil=True)
def _relu_forward_flat(y, x):
    n = x.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        xb, yb = x[lo:hi], y[lo:hi]
        for i in range(xb.size):
            v = xb[i]
            yb[i] = np.float32(0.0) if v <= np.float32(0.0) else v


@njit(parallel=True, cache=True, nogil=True)
def _relu_backward_flat(dx, y, dy):
    n = y.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        dxb, yb, dyb = dx[lo:hi], y[lo:hi], dy[lo:hi]
        for i in range(yb.size):
            dxb[i] = dyb[i] if yb[i] > np.float32(0.0) else np.float32(0.0)


def relu_forward(y, x):
    """y = max(x, 0); y and x of the same shape."""
    _relu_forward_flat(y.reshape(-1), x.reshape(-1))


def relu_backward(dx, y, dy):
    """dx = dy * (y > 0); all three of the same shape."""
    _relu_backward_flat(dx.reshape(-1), y.reshape(-1), dy.reshape(-1))
