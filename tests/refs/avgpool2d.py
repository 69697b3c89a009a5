"""Average pooling in float64 loops."""

import numpy as np


def avgpool2d_forward(x, size, stride):
    N, C, H, W = x.shape
    P, Q = (H - size) // stride + 1, (W - size) // stride + 1
    y = np.zeros((N, C, P, Q))
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    total = 0.0
                    for i in range(size):
                        for j in range(size):
                            total += x[n, c, p * stride + i, q * stride + j]
                    y[n, c, p, q] = total / (size * size)
    return y
