"""ReLU in float64 loops."""

import numpy as np


def relu_forward(x):
    y = np.zeros(x.shape)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for i in range(flat_x.size):
        flat_y[i] = flat_x[i] if flat_x[i] > 0 else 0.0
    return y
