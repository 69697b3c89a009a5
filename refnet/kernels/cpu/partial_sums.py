"""Sums over a batch in a fixed number of partial sums, added in a fixed order: the backward passes'
weight gradients come out bit-identical whatever the number of threads.

    chunks 0 .. chunks-1 are cut into `parts` runs of `per_part` consecutive chunks (the last may be
    shorter); each run is summed in order by one task, then
    total[i] = partials[0, i] + partials[1, i] + ... + partials[parts - 1, i]   (float32, in that order)
"""

import numpy as np
from numba import njit, prange

# The number of partial sums: fixed, so the result does not depend on the threads.
PARTS = 4


def split_into_parts(chunks):
    """(per_part, parts): runs of consecutive chunks, at most PARTS of them."""
    per_part = (chunks + PARTS - 1) // PARTS
    return per_part, (chunks + per_part - 1) // per_part


@njit(parallel=True, cache=True, nogil=True)
def sum_parts(total, partials):
    """total = partials[0] + partials[1] + ... in that order (1-D total, 2-D partials), split over
    the threads by blocks. total may be partials[0] itself (each element is read before it is
    written)."""
    size = total.size
    for t in prange((size + 4095) // 4096):
        for i in range(t * 4096, min(size, (t + 1) * 4096)):
            acc = partials[0, i]
            for part in range(1, partials.shape[0]):
                acc += partials[part, i]
            total[i] = acc
