"""2-D convolution (cross-correlation, as every framework) on the CPU, with zero padding and groups.

    forward:  y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*Cg + c, p*stride - pad + r, q*stride - pad + s]
              (g = k // Kg, the group of output channel k; x is 0 outside the image)
    backward: dx[n, g*Cg + c, h, w] = sum_{k in g, r, s, p, q : p*stride - pad + r = h, q*stride - pad + s = w} w[k, c, r, s] * dy[n, k, p, q]
              dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x[n, g*Cg + c, p*stride - pad + r, q*stride - pad + s]
              db[k] = sum_{n, p, q} dy[n, k, p, q]
Layouts (float32, C-contiguous): x, dx (N, C, H, W); w, dw (K, Cg, R, S) with Cg = C / groups and
Kg = K / groups output channels per group; b, db (K,); y, dy (N, K, P, Q) with
P = (H + 2*pad - R) // stride + 1, Q = (W + 2*pad - S) // stride + 1.
The backward writes dx, dw, db (nothing accumulates); dx is skipped when None.

The fast launchers turn each image and group into GEMMs over the packed kernel of `gemm.py`
(D = Cg*R*S, the length of one receptive field):
    forward:         y_g (Kg, P*Q)   = w_g (Kg, D) @ patches (P*Q, D).T      patches: one row per output pixel
    backward data:   dcols (D, P*Q)  = w_g.T (D, Kg) @ dy_g (Kg, P*Q)        then col2im adds dcols into dx
    backward filter: dw_g (Kg, D)   += dy_g (Kg, P*Q) @ cols (D, P*Q).T      cols: one row per (c, r, s)
Both im2col layouts are chosen so that the GEMM finds its K dimension contiguous. Images are walked
in order and dw is summed image after image, so the result does not depend on the thread count.
`conv2d_forward_direct` and `conv2d_backward_direct` are the plain loop nests the fast ones are
tested against.
"""

import numpy as np
from numba import njit, prange

from .gemm import gemm_strided


# ---------------------------------------------------------------------------------------------
# im2col / col2im for one image


@njit(parallel=True, cache=True)
def _patches(patches, x, n, c0, Cg, R, S, stride, pad, P, Q):
    """patches[p*Q + q, (c*R + r)*S + s] = x[n, c0 + c, p*stride - pad + r, q*stride - pad + s] (0 outside)."""
    H, W = x.shape[2], x.shape[3]
    D = Cg * R * S
    for pq in prange(P * Q):
        p = pq // Q
        q = pq - p * Q
        row = patches[pq * D : (pq + 1) * D]
        for c in range(Cg):
            for r in range(R):
                h = p * stride - pad + r
                base = (c * R + r) * S
                if h < 0 or h >= H:
                    for s in range(S):
                        row[base + s] = np.float32(0.0)
                    continue
                for s in range(S):
                    w = q * stride - pad + s
                    row[base + s] = x[n, c0 + c, h, w] if 0 <= w < W else np.float32(0.0)


@njit(parallel=True, cache=True)
def _cols(cols, x, n, c0, Cg, R, S, stride, pad, P, Q):
    """cols[(c*R + r)*S + s, p*Q + q] = x[n, c0 + c, p*stride - pad + r, q*stride - pad + s] (0 outside)."""
    H, W = x.shape[2], x.shape[3]
    PQ = P * Q
    for crs in prange(Cg * R * S):
        c = crs // (R * S)
        r = (crs // S) % R
        s = crs % S
        row = cols[crs * PQ : (crs + 1) * PQ]
        for p in range(P):
            h = p * stride - pad + r
            if h < 0 or h >= H:
                for q in range(Q):
                    row[p * Q + q] = np.float32(0.0)
                continue
            for q in range(Q):
                w = q * stride - pad + s
                row[p * Q + q] = x[n, c0 + c, h, w] if 0 <= w < W else np.float32(0.0)


@njit(parallel=True, cache=True)
def _col2im(dx, dcols, n, c0, Cg, R, S, stride, pad, P, Q):
    """dx[n, c0 + c, h, w] = sum of dcols[(c*R + r)*S + s, p*Q + q] over the (r, s, p, q) landing on (h, w).

    One task per input channel, so each element of dx is summed by one thread in a fixed order.
    """
    H, W = dx.shape[2], dx.shape[3]
    PQ = P * Q
    for c in prange(Cg):
        plane = dx[n, c0 + c]
        for h in range(H):
            for w in range(W):
                plane[h, w] = np.float32(0.0)
        for r in range(R):
            for s in range(S):
                row = dcols[((c * R + r) * S + s) * PQ : ((c * R + r) * S + s + 1) * PQ]
                for p in range(P):
                    h = p * stride - pad + r
                    if h < 0 or h >= H:
                        continue
                    for q in range(Q):
                        w = q * stride - pad + s
                        if 0 <= w < W:
                            plane[h, w] += row[p * Q + q]


@njit(parallel=True, cache=True)
def _fill_with_bias(y, b):
    N, K, P, Q = y.shape
    for nk in prange(N * K):
        n = nk // K
        k = nk - n * K
        for p in range(P):
            for q in range(Q):
                y[n, k, p, q] = b[k]


@njit(parallel=True, fastmath=True, cache=True)
def _bias_gradient(db, dy):
    """db[k] = sum over n, p, q of dy[n, k, p, q], one thread per k."""
    N, K, P, Q = dy.shape
    for k in prange(K):
        total = np.float32(0.0)
        for n in range(N):
            plane = dy[n, k].reshape(-1)
            for i in range(P * Q):
                total += plane[i]
        db[k] = total


@njit(parallel=True, cache=True)
def _transpose_weights(wt, w, groups):
    """wt[g, d, kk] = w[g*Kg + kk, d]: w (K, D) as one (D, Kg) matrix per group."""
    K, D = w.shape
    Kg = K // groups
    for gd in prange(groups * D):
        g = gd // D
        d = gd - g * D
        for kk in range(Kg):
            wt[g, d, kk] = w[g * Kg + kk, d]


# ---------------------------------------------------------------------------------------------
# Launchers


def conv2d_forward(y, x, w, b, stride, pad, groups):
    """y = conv(x, w) + b (see the module doc for the formula and layouts)."""
    N, C, _, _ = x.shape
    K, Cg, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    Kg, D, PQ = K // groups, Cg * R * S, P * Q
    one = np.float32(1.0)
    patches = np.empty(PQ * D, dtype=np.float32)
    w_flat = w.reshape(-1)
    _fill_with_bias(y, b)
    for n in range(N):
        for g in range(groups):
            _patches(patches, x, n, g * Cg, Cg, R, S, stride, pad, P, Q)
            y_g = y[n, g * Kg : (g + 1) * Kg].reshape(-1)
            gemm_strided(y_g, PQ, w_flat[g * Kg * D : (g + 1) * Kg * D], D, False, patches, D, True,
                         Kg, PQ, D, one, one)


def conv2d_backward(dx, dw, db, x, w, dy, stride, pad, groups):
    """dx (skipped when None), dw and db of the convolution (see the module doc)."""
    N, C, _, _ = x.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    Kg, D, PQ = K // groups, Cg * R * S, P * Q
    one, zero = np.float32(1.0), np.float32(0.0)
    cols = np.empty(D * PQ, dtype=np.float32)
    dw_flat = dw.reshape(-1)
    _bias_gradient(db, dy)
    if dx is not None:
        wt = np.empty((groups, D, Kg), dtype=np.float32)
        _transpose_weights(wt, w.reshape(K, D), groups)
    for n in range(N):
        for g in range(groups):
            dy_g = dy[n, g * Kg : (g + 1) * Kg].reshape(-1)
            _cols(cols, x, n, g * Cg, Cg, R, S, stride, pad, P, Q)
            gemm_strided(dw_flat[g * Kg * D : (g + 1) * Kg * D], D, dy_g, PQ, False, cols, PQ, True,
                         Kg, D, PQ, one, zero if n == 0 else one)
            if dx is not None:
                # cols is free again: reuse it for the gradient of the columns.
                gemm_strided(cols, PQ, wt[g].reshape(-1), Kg, False, dy_g, PQ, False, D, PQ, Kg, one, zero)
                _col2im(dx, cols, n, g * Cg, Cg, R, S, stride, pad, P, Q)


# ---------------------------------------------------------------------------------------------
# The simple kernels: direct loop nests, the reference of the launchers above.


@njit(parallel=True, cache=True)
def _forward_direct(y, x, w, b, stride, pad, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    Kg = K // groups
    for nk in prange(N * K):
        n = nk // K
        k = nk - n * K
        c0 = (k // Kg) * Cg
        for p in range(P):
            for q in range(Q):
                total = b[k]
                for c in range(Cg):
                    for r in range(R):
                        h = p * stride - pad + r
                        if h < 0 or h >= H:
                            continue
                        for s in range(S):
                            ww = q * stride - pad + s
                            if 0 <= ww < W:
                                total += w[k, c, r, s] * x[n, c0 + c, h, ww]
                y[n, k, p, q] = total


@njit(parallel=True, cache=True)
def _backward_data_direct(dx, w, dy, stride, pad, groups):
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for nc in prange(N * C):
        n = nc // C
        ch = nc - n * C
        g = ch // Cg
        c = ch - g * Cg
        for h in range(H):
            for ww in range(W):
                total = np.float32(0.0)
                for k in range(g * Kg, (g + 1) * Kg):
                    for r in range(R):
                        ph = h + pad - r
                        if ph < 0 or ph % stride != 0 or ph // stride >= P:
                            continue
                        for s in range(S):
                            qw = ww + pad - s
                            if qw < 0 or qw % stride != 0 or qw // stride >= Q:
                                continue
                            total += w[k, c, r, s] * dy[n, k, ph // stride, qw // stride]
                dx[n, ch, h, ww] = total


@njit(parallel=True, cache=True)
def _backward_filter_direct(dw, db, x, dy, stride, pad, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for k in prange(K):
        c0 = (k // Kg) * Cg
        for c in range(Cg):
            for r in range(R):
                for s in range(S):
                    total = np.float32(0.0)
                    for n in range(N):
                        for p in range(P):
                            h = p * stride - pad + r
                            if h < 0 or h >= H:
                                continue
                            for q in range(Q):
                                ww = q * stride - pad + s
                                if 0 <= ww < W:
                                    total += dy[n, k, p, q] * x[n, c0 + c, h, ww]
                    dw[k, c, r, s] = total
        total = np.float32(0.0)
        for n in range(N):
            for p in range(P):
                for q in range(Q):
                    total += dy[n, k, p, q]
        db[k] = total


def conv2d_forward_direct(y, x, w, b, stride, pad, groups):
    """Same contract as `conv2d_forward`; one loop nest per output element."""
    _forward_direct(y, x, w, b, stride, pad, groups)


def conv2d_backward_direct(dx, dw, db, x, w, dy, stride, pad, groups):
    """Same contract as `conv2d_backward`; each gradient element gathered by its own loop nest."""
    if dx is not None:
        _backward_data_direct(dx, w, dy, stride, pad, groups)
    _backward_filter_direct(dw, db, x, dy, stride, pad, groups)
