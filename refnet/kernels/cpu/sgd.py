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


@njit(parallel=True, cache=True)
def _sgd_momentum_update_flat(w, dw, v, lr, momentum, decay_lr):
    n = w.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            vi = momentum * v[i] - decay_lr * w[i] - lr * dw[i]
            v[i] = vi
            w[i] = w[i] + vi


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
