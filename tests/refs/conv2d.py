"""2-D convolution (cross-correlation) with zero padding, stride and groups, in float64 loops."""

import numpy as np


def output_size(H, R, stride, pad):
    return (H + 2 * pad - R) // stride + 1


def _taps(Cg, R, S, p, q, stride, pad, H, W):
    """(c, r, s, h, w) of each filter tap of output pixel (p, q) that lands inside the H x W image."""
    for c in range(Cg):
        for r in range(R):
            for s in range(S):
                h, w = p * stride - pad + r, q * stride - pad + s
                if 0 <= h < H and 0 <= w < W:
                    yield c, r, s, h, w


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
                    for c, r, s, h, ww in _taps(Cg, R, S, p, q, stride, pad, H, W):
                        total += float(w[k, c, r, s]) * float(x[n, c0 + c, h, ww])
                    y[n, k, p, q] = total
    return y


def conv2d_backward(x, w, dy, stride=1, pad=0, groups=1):
    """dx, dw, db of conv2d_forward for the output gradient dy, each input pixel's and weight's
    share summed term by term in float64."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    P, Q = dy.shape[2], dy.shape[3]
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    db = np.zeros(K)
    for n in range(N):
        for k in range(K):
            c0 = (k // Kg) * Cg
            for p in range(P):
                for q in range(Q):
                    g = float(dy[n, k, p, q])
                    db[k] += g
                    for c, r, s, h, ww in _taps(Cg, R, S, p, q, stride, pad, H, W):
                        dx[n, c0 + c, h, ww] += float(w[k, c, r, s]) * g
                        dw[k, c, r, s] += float(x[n, c0 + c, h, ww]) * g
    return dx, dw, db
