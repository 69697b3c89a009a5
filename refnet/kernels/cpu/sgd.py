"""SGD with momentum and weight decay on the CPU, in place (Krizhevsky et al. 2012, section 5).

    v <- momentum * v - weight_decay * lr * w - lr * dw
    w <- w + v

Layout: w, dw, v float32, C-contiguous, all of one shape (typically the flat parameter buffer).
Each element is updated by one thread with the same float32 operations in the same order, so the
result does not depend on the number of threads.
"""

import numpy as np
from numba import njit, prange

BLOCK = 1 << 15


@njit(parallel=True, cache=True, nogil=True)
def _sgd_momentum_update_flat(w, dw, v, lr, momentum, decay_lr):
    n = w.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        # A slice per task and a loop from 0: the form LLVM vectorises (see relu.py).
        wb, dwb, vb = w[lo:hi], dw[lo:hi], v[lo:hi]
        for i in range(wb.size):
            vi = momentum * vb[i] - decay_lr * wb[i] - lr * dwb[i]
            vb[i] = vi
            wb[i] = wb[i] + vi


def sgd_momentum_update(w, dw, v, lr, momentum, weight_decay):
    """In place: v = momentum*v - weight_decay*lr*w - lr*dw; w += v. Coefficients rounded to float32."""
    _sgd_momentum_update_flat(
        w.reshape(-1),
        dw.reshape(-1),
        v.reshape(-1),
        np.float32(lr),
        np.float32(momentum),
        np.float32(weight_decay * lr),
    )
