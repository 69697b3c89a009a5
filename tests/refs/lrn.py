"""Local response normalisation in float64 loops, the paper's formula (alpha not divided by size)."""

import numpy as np


def lrn_forward(x, size, alpha, beta, k):
    """Returns (y, scale) with scale = k + alpha * sum of x^2 over the clipped channel window."""
    N, C, H, W = x.shape
    half = size // 2
    y = np.zeros(x.shape)
    scale = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    total = 0.0
                    for cc in range(max(0, c - half), min(C - 1, c + half) + 1):
                        total += float(x[n, cc, h, w]) ** 2
                    scale[n, c, h, w] = k + alpha * total
                    y[n, c, h, w] = x[n, c, h, w] / scale[n, c, h, w] ** beta
    return y, scale
