"""GEMM and the fully connected layer in float64 loops."""

import numpy as np


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    """alpha * op(a) @ op(b) + beta * c; c is not read when beta == 0."""
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    out = np.zeros((M, N))
    for i in range(M):
        for j in range(N):
            total = 0.0
            for p in range(K):
                a_ip = a[p, i] if trans_a else a[i, p]
                b_pj = b[j, p] if trans_b else b[p, j]
                total += float(a_ip) * float(b_pj)
            out[i, j] = alpha * total + (beta * float(c[i, j]) if beta != 0.0 else 0.0)
    return out


def linear_forward(x, w, b):
    """y[n, o] = sum_i x[n, i] * w[o, i] + b[o]."""
    N, IN = x.shape
    OUT = w.shape[0]
    y = np.zeros((N, OUT))
    for n in range(N):
        for o in range(OUT):
            total = float(b[o])
            for i in range(IN):
                total += float(x[n, i]) * float(w[o, i])
            y[n, o] = total
    return y
