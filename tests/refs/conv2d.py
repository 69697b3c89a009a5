"""2-D convolution (cross-correlation) with zero padding, stride and groups, in float64 loops."""

import numpy as np


def output_size(H, R, stride, pad):
    return (H + 2 * pad - R) // stride + 1


def conv2d_forward(x, w, b, stride=1, pad=0, groups=1):
    """y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*Cg + c, p*stride - pad + r, q*stride - pad + s]."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    P, Q = output_size(H, R, stride, pad), output_size(W, S, stride, pad)
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            c0 = (k // Kg) * Cg
            for p in range(P):
                for q in range(Q):
                    total = float(b[k])
                    for c in range(Cg):
                        for r in range(R):
                            for s in range(S):
                                h = p * stride - pad + r
                                ww = q * stride - pad + s
                                if 0 <= h < H and 0 <= ww < W:
                                    total += float(w[k, c, r, s]) * float(x[n, c0 + c, h, ww])
                    y[n, k, p, q] = total
    return y
