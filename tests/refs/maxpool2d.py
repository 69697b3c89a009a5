"""Max pooling in float64 loops: outputs, argmax (first maximum in row-major window order)."""

import numpy as np


def maxpool2d_forward(x, size, stride):
    N, C, H, W = x.shape
    P, Q = (H - size) // stride + 1, (W - size) // stride + 1
    y = np.zeros((N, C, P, Q))
    argmax = np.zeros((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    best, best_at = -np.inf, -1
                    for i in range(size):
                        for j in range(size):
                            h, w = p * stride + i, q * stride + j
                            if x[n, c, h, w] > best:
                                best, best_at = x[n, c, h, w], h * W + w
                    y[n, c, p, q] = best
                    argmax[n, c, p, q] = best_at
    return y, argmax
