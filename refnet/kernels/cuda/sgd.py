"""SGD with momentum and weight decay on the GPU, in place (Krizhevsky et al. 2012, section 5).

    v <- momentum * v - weight_decay * lr * w - lr * dw
    w <- w + v

Layout: w, dw, v float32, C-contiguous device arrays of one shape (typically the flat parameter
buffer: one launch updates the whole network). One thread per element, coalesced, grid-stride.
"""

import numpy as np
from numba import cuda

from ._grid import elementwise_grid


@cuda.jit
def _sgd_momentum_update_flat(w, dw, v, lr, momentum, decay_lr):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, step):
        vi = momentum * v[i] - decay_lr * w[i] - lr * dw[i]
        v[i] = vi
        w[i] = w[i] + vi


def sgd_momentum_update(w, dw, v, lr, momentum, weight_decay):
    """In place: v = momentum*v - weight_decay*lr*w - lr*dw; w += v. Coefficients rounded to float32."""
    blocks, threads = elementwise_grid(w.size)
    _sgd_momentum_update_flat[blocks, threads](
        w.reshape(-1),
        dw.reshape(-1),
        v.reshape(-1),
        np.float32(lr),
        np.float32(momentum),
        np.float32(weight_decay * lr),
    )
