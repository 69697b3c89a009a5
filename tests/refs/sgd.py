"""One SGD momentum step in float64, written out element by element."""

import numpy as np


def sgd_momentum_update(w, dw, v, lr, momentum, weight_decay):
    """Returns the new (w, v) as float64 arrays; the inputs are not changed."""
    w_new = np.array(w, dtype=np.float64).reshape(-1)
    v_new = np.array(v, dtype=np.float64).reshape(-1)
    flat_dw = np.asarray(dw, dtype=np.float64).reshape(-1)
    for i in range(w_new.size):
        v_new[i] = momentum * v_new[i] - weight_decay * lr * w_new[i] - lr * flat_dw[i]
        w_new[i] = w_new[i] + v_new[i]
    return w_new.reshape(np.shape(w)), v_new.reshape(np.shape(v))
