"""All-finite check on the GPU: the trainer's guard before every SGD update, with one int32 (not
the whole gradient) coming back to the host.

    all_finite(x) = not any(isnan(x[i]) or isinf(x[i]))

Layout: a flat float32 device array. A value v is finite exactly when v - v == 0. Every thread
that finds a non-finite value writes 1 to the same flag: the writes race, but they all write the
same value, so the result does not depend on their order.
"""

import numpy as np
from numba import cuda, float32, int32

from ._grid import elementwise_grid


@cuda.jit
def _flag_non_finite(flat, flag):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, flat.size, step):
        v = flat[i]
        if v - v != float32(0.0):
            flag[0] = int32(1)


def all_finite(flat):
    """True when no element of the 1-D float32 device array `flat` is NaN or infinite."""
    flag = cuda.to_device(np.zeros(1, dtype=np.int32))
    blocks, threads = elementwise_grid(flat.size)
    _flag_non_finite[blocks, threads](flat, flag)
    return int(flag.copy_to_host()[0]) == 0
