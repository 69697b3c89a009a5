"""All-finite check on the CPU: the trainer's guard before every SGD update.

    all_finite(x) = not any(isnan(x[i]) or isinf(x[i]))

Layout: a flat float32 array (any C-contiguous array viewed as 1-D). A value v is finite exactly
when v - v == 0 (NaN - NaN and inf - inf are NaN); that form vectorises, and it is why this file
must not use fastmath (which assumes there is no NaN or inf to find).
"""

import numpy as np
from numba import njit, prange

BLOCK = 1 << 15


@njit(parallel=True, cache=True, nogil=True)
def _non_finite_per_block(flat):
    n = flat.size
    blocks = (n + BLOCK - 1) // BLOCK
    counts = np.zeros(blocks, dtype=np.int64)
    for b in prange(blocks):
        chunk = flat[b * BLOCK : min(n, (b + 1) * BLOCK)]
        count = 0
        for i in range(chunk.size):
            v = chunk[i]
            count += 1 if v - v != np.float32(0.0) else 0
        counts[b] = count  # one writer per block: no shared counter between threads
    return counts


def all_finite(flat):
    """True when no element of the 1-D float32 array `flat` is NaN or infinite."""
    return not _non_finite_per_block(flat).any()
