"""Max pooling in float64 loops: outputs and argmax, with kernels/cpu/maxpool2d.py's documented rule:
ties go to the first maximum in row-major window order (a later value wins only when strictly
greater, so of +0 and -0 the first one, sign kept), and a NaN wins its window (the first NaN)."""

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
                    best, best_at = None, -1
                    for i in range(size):
                        for j in range(size):
                            h, w = p * stride + i, q * stride + j
                            value = x[n, c, h, w]
                            if best is None or (not np.isnan(best) and (np.isnan(value) or value > best)):
                                best, best_at = value, h * W + w
                    y[n, c, p, q] = best
                    argmax[n, c, p, q] = best_at
    return y, argmax
