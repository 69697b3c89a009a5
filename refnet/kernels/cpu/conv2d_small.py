"""2-D convolution for small outputs (the 3x3 maps of conv3-conv5 at a 67-px input): per output
position, GEMMs over the whole batch with only the filter taps that touch the image. Stride 1.

Same formulas as conv2d.py (cross-correlation, zero padding, groups; Kg = K / groups, Cg = C / groups):
    forward:  y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*Cg + c, p - pad + r, q - pad + s]
    backward data:   dx = the forward of dy with w turned 180 degrees and K, C swapped
                     (w_flip[c, k, r, s] = w[k, c, R-1-r, S-1-s], padding R-1-pad), no bias
    backward filter: dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x[n, g*Cg + c, p - pad + r, q - pad + s]
Layouts the GEMMs read (copied from the NCHW arrays on the way in, back on the way out):
    forward:   xt (H, W, C, N), wt (K, R, S, Cg), yt (P, Q, K, N)
               for output (p, q) and filter row r (h = p - pad + r inside the image) the taps
               s_lo <= s < s_hi that touch it give one GEMM (groups == 1; one per tap otherwise):
               yt[p, q, g*Kg:(g+1)*Kg, :] += wt[g*Kg:, r, s_lo:s_hi, :] (Kg, run*Cg) @ xt[h, w_lo:w_hi, g*Cg:, :] (run*Cg, N)
    backward filter: xc (H, C, W, N), dyc (P, K, Q, N), dwt (R, S, K, Cg)
               for tap (r, s) and output row p whose input row is inside, the outputs q_lo <= q < q_hi
               whose input column is inside give one GEMM with a reduction over (q, n):
               dwt[r, s, g*Kg:, :] += dyc[p, g*Kg:, q_lo:q_hi, :] (Kg, run*N) @ xc[h, g*Cg:, w_lo:w_hi, :].T
im2col on a 3x3 output with padding 1 multiplies 81 filter taps per output where 49 touch the
image; here only the 49 are multiplied, and every GEMM has the whole batch as its N (forward) or
inside its K (filter gradient).
Work is shared out as (output column q or tap) x (block of KBLOCK output channels): every value
of y, dx, dw is written by one task, each as a fixed sequence of GEMMs, so results do not depend
on the thread count.
"""

import numpy as np
from numba import njit, prange

from .gemm import MR, UNIT_STRIDE, gemm_serial, gemm_serial_packed, packed_a
from .simd import LANES, vload, vstore, vtranspose16

# Rows of c per task: a whole number of register tiles (64 rows with AVX2's 4-row tile, 128 with
# AVX-512's 8); conv3-5's 256-384 channels give 2-6 blocks, so 6-18 tasks for two threads over the
# 3 columns of a 3x3 map (forward) and 18-54 over its 9 taps (weight gradient).
KBLOCK = 16 * MR


# The copies between layouts run on one thread: the maps are small (at most a few hundred KB), and
# a parallel function costs seconds more to compile.
@njit(cache=True, nogil=True)
def _nchw_to_spatial(dst, x, channels_inside):
    """dst = x (N, C, H, W) laid out (H, C, W, N) when channels_inside, else (H, W, C, N)."""
    N, C, H, W = x.shape
    for h in range(H):
        for c in range(C):
            for w in range(W):
                at = ((h * C + c) * W + w) * N if channels_inside else ((h * W + w) * C + c) * N
                for n in range(N):
                    dst[at + n] = x[n, c, h, w]


@njit(cache=True, nogil=True, inline="always")
def _task_block(task, groups, Kg):
    """Task number -> (position or tap index, first output channel k0, rows): tasks run over
    (position or tap) x group x block of KBLOCK output channels."""
    k_blocks = (Kg + KBLOCK - 1) // KBLOCK
    at, rest = task // (groups * k_blocks), task % (groups * k_blocks)
    g, kb = rest // k_blocks, rest % k_blocks
    k0 = g * Kg + kb * KBLOCK
    return at, k0, min(KBLOCK, (g + 1) * Kg - k0)


@njit(parallel=True, cache=True, nogil=True)
def _forward_positions(yt, xt, wt, H, W, C, N, K, R, S, pad, groups, P, Q):
    """yt (P, Q, K, N) = the convolution without bias, one task per (output column q, channel
    block). Each filter row r's taps that touch column q make one op(a), packed once and multiplied
    by the input of every output row p whose input row is inside: with N = the batch, packing op(a)
    costs about as much as its product, so each packing serves up to R products. Every output
    (p, q) still sums its GEMMs in the order r, then s."""
    Cg, Kg = C // groups, K // groups
    for task in prange(Q * groups * ((Kg + KBLOCK - 1) // KBLOCK)):
        q, k0, rows = _task_block(task, groups, Kg)
        g = k0 // Kg
        s_lo, s_hi = max(0, pad - q), min(S, W + pad - q)
        run = max(1, s_hi - s_lo) if groups == 1 else 1  # range() needs a step of 1 or more
        written = np.zeros(P, dtype=np.bool_)
        for r in range(R):
            p_lo, p_hi = max(0, pad - r), min(P, H + pad - r)  # rows p whose input row h is inside
            if p_hi <= p_lo:
                continue
            for s in range(s_lo, s_hi, run):
                w0 = q - pad + s
                ap = packed_a(wt[((k0 * R + r) * S + s) * Cg :], R * S * Cg, UNIT_STRIDE, rows, run * Cg)
                for p in range(p_lo, p_hi):
                    h = p - pad + r
                    beta = np.float32(1.0) if written[p] else np.float32(0.0)
                    gemm_serial_packed(yt[((p * Q + q) * K + k0) * N :], N, ap, rows, run * Cg,
                                       xt[((h * W + w0) * C + g * Cg) * N :], N, UNIT_STRIDE, N, np.float32(1.0), beta)
                    written[p] = True
        for p in range(P):
            if not written[p]:  # no tap touches the image
                c_at = ((p * Q + q) * K + k0) * N
                yt[c_at : c_at + rows * N] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _to_nchw_with_bias(y, yt, b):
    """y[n, k, p, q] = yt[p, q, k, n] + b[k], reading yt along its rows (the loop in y's order, down
    yt's columns, took 7 times as long)."""
    N, K, P, Q = y.shape
    PQ = P * Q
    flat = y.reshape(y.size)  # a view: numba's reshape refuses a non-contiguous array
    for k in range(K):
        for pq in range(PQ):
            src = yt[(pq * K + k) * N : (pq * K + k + 1) * N]
            for n in range(N):
                flat[(n * K + k) * PQ + pq] = src[n] + b[k]


@njit(cache=True, nogil=True)
def _filter_by_taps(wt, w):
    """wt (K, R, S, Cg, flat) from w (K, Cg, R, S): per output channel a (Cg, taps) matrix
    turned into (taps, Cg), written along its rows (written across them, the copy cost a third of
    conv4's forward: bench/results/cpu-amd-epyc-zen3.md, "Filter layouts")."""
    K, Cg, R, S = w.shape
    taps, size = R * S, Cg * R * S
    flat = w.reshape(w.size)
    for k in range(K):
        src = flat[k * size : (k + 1) * size]
        dst = wt[k * size : (k + 1) * size]
        for t in range(taps):
            for c in range(Cg):
                dst[t * Cg + c] = src[c * taps + t]


@njit(cache=True, nogil=True)
def _flipped_filter_by_taps(wt, w, groups):
    """wt (C, R, S, Kg, flat) = w (K, Cg, R, S) turned 180 degrees with its channels swapped within
    each group (C = groups*Cg), for the data gradient. Per group, w is a (Kg, Cg*taps) matrix whose
    transpose is wt's group but for the order of the taps (t -> taps-1-t): 16 x 16 blocks are
    transposed in registers and each row stored where its tap goes; the edges value by value."""
    K, Cg, R, S = w.shape
    Kg, taps = K // groups, R * S
    cols = Cg * taps
    flat = w.reshape(w.size)
    tile = np.empty(LANES * LANES, np.float32)
    whole_rows, whole_cols = Kg // LANES * LANES, cols // LANES * LANES
    for g in range(groups):
        a0, d0 = g * Kg * cols, g * Cg * taps * Kg
        for i in range(0, whole_rows, LANES):
            for j in range(0, whole_cols, LANES):
                vtranspose16(flat, a0 + i * cols + j, cols, tile, 0, LANES)
                for r in range(LANES):
                    c, t = (j + r) // taps, (j + r) % taps
                    vstore(wt, d0 + (c * taps + taps - 1 - t) * Kg + i, vload(tile, r * LANES))
        for k in range(Kg):
            for j in range(whole_cols if k < whole_rows else 0, cols):
                c, t = j // taps, j % taps
                wt[d0 + (c * taps + taps - 1 - t) * Kg + k] = flat[a0 + k * cols + j]


@njit(cache=True, nogil=True)
def _filter_from_taps(dw, dwt):
    """dw (K, Cg, R, S) = dwt (R, S, K, Cg, flat), written along dw's rows."""
    K, Cg, R, S = dw.shape
    taps, size = R * S, Cg * R * S
    flat = dw.reshape(dw.size)  # a view: numba's reshape refuses a non-contiguous array
    for k in range(K):
        dst = flat[k * size : (k + 1) * size]
        for t in range(taps):
            src = dwt[(t * K + k) * Cg : (t * K + k + 1) * Cg]
            for c in range(Cg):
                dst[c * taps + t] = src[c]


def _forward(y, x, wt, b, R, S, pad, groups):
    N, C, H, W = x.shape
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    xt = np.empty(x.size, np.float32)
    _nchw_to_spatial(xt, x, False)
    yt = np.empty(y.size, np.float32)
    _forward_positions(yt, xt, wt, H, W, C, N, K, R, S, pad, groups, P, Q)
    _to_nchw_with_bias(y, yt, b)


def small_forward(y, x, w, b, pad, groups):
    """conv2d_forward, stride 1, by output positions (see the module doc)."""
    K, Cg, R, S = w.shape
    wt = np.empty(w.size, np.float32)
    _filter_by_taps(wt, w)
    _forward(y, x, wt, b, R, S, pad, groups)


def small_backward_data(dx, w, dy, pad, groups):
    """dx of a stride-1 convolution: the forward of dy with the flipped filter, channels swapped."""
    K, Cg, R, S = w.shape
    wt = np.empty(w.size, np.float32)
    _flipped_filter_by_taps(wt, w, groups)
    _forward(dx, dy, wt, np.zeros(dx.shape[1], np.float32), R, S, R - 1 - pad, groups)


@njit(parallel=True, cache=True, nogil=True)
def _filter_taps(dwt, xc, dyc, H, W, C, N, K, R, S, pad, groups, P, Q):
    """dwt (R, S, K, Cg): one task per (tap, channel block), a GEMM per output row p."""
    Cg, Kg = C // groups, K // groups
    for task in prange(R * S * groups * ((Kg + KBLOCK - 1) // KBLOCK)):
        rs, k0, rows = _task_block(task, groups, Kg)
        r, s = rs // S, rs % S
        g = k0 // Kg
        c_at = (rs * K + k0) * Cg
        q_lo, q_hi = max(0, pad - s), min(Q, W + pad - s)
        beta = np.float32(0.0)
        if q_hi > q_lo:
            for p in range(P):
                h = p - pad + r
                if h < 0 or h >= H:
                    continue
                w0 = q_lo - pad + s
                # op(a)[k, (q, n)] = dyc[p, k, q, n]; op(b)[(q, n), c] = xc[h, g*Cg + c, w, n].
                gemm_serial(dwt[c_at:], Cg, dyc[((p * K + k0) * Q + q_lo) * N :], Q * N, UNIT_STRIDE,
                            xc[((h * C + g * Cg) * W + w0) * N :], UNIT_STRIDE, W * N, rows, Cg, (q_hi - q_lo) * N,
                            np.float32(1.0), beta)
                beta = np.float32(1.0)
        if beta == np.float32(0.0):  # the tap never touches the image
            dwt[c_at : c_at + rows * Cg] = np.float32(0.0)


def small_backward_filter(dw, x, dy, pad, groups):
    """dw of a stride-1 convolution by filter taps (see the module doc)."""
    N, C, H, W = x.shape
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    xc = np.empty(x.size, np.float32)
    _nchw_to_spatial(xc, x, True)
    dyc = np.empty(dy.size, np.float32)
    _nchw_to_spatial(dyc, dy, True)
    dwt = np.empty(dw.size, np.float32)
    _filter_taps(dwt, xc, dyc, H, W, C, N, K, R, S, pad, groups, P, Q)
    _filter_from_taps(dw, dwt)
