"""2-D convolution for small outputs (up to 7x7: conv2-conv5 at a 67-px input, conv_path): per output
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
               wt and xt are stored as the GEMM's packed operands, laid out once per call
               (`_filter_panels`: groups of MR rows of wt, MR values per K index; `_batch_panels`:
               panels of NR images), so no GEMM packs them.
    backward filter: xc (H, C, W, N), dyc (P, K, Q, N), dwt (R, S, K, Cg)
               for tap (r, s) and output row p whose input row is inside, the outputs q_lo <= q < q_hi
               whose input column is inside give one GEMM with a reduction over (q, n):
               dwt[r, s, g*Kg:, :] += dyc[p, g*Kg:, q_lo:q_hi, :] (Kg, run*N) @ xc[h, g*Cg:, w_lo:w_hi, :].T
               xc and dyc are stored as the GEMM's packed operands (`_channel_panels`).
All three passes multiply with `gemm_serial_prepacked`. im2col on a 3x3 output with padding 1
multiplies 81 filter taps per output where 49 touch the image; here only the 49 are multiplied, and every GEMM has the whole batch as its N (forward) or
inside its K (filter gradient).
Work is shared out as (output column q or tap) x (block of KBLOCK output channels): every value
of y, dx, dw is written by one task, each as a fixed sequence of GEMMs, so results do not depend
on the thread count.
"""

import numpy as np
from numba import njit, prange

from .gemm import MR, NR, gemm_serial_prepacked

# Rows of c per task: a whole number of register tiles (64 rows with AVX2's 4-row tile, 128 with
# AVX-512's 8); conv3-5's 256-384 channels give 2-6 blocks, so 6-18 tasks for two threads over the
# 3 columns of a 3x3 map (forward) and 18-54 over its 9 taps (weight gradient).
KBLOCK = 16 * MR


# The copies between layouts run on one thread: the maps are small (at most a few hundred KB), and
# a parallel function costs seconds more to compile.
@njit(cache=True, nogil=True)
def _batch_panels(xq, x):
    """x (N, C, H, W) as the forward GEMMs' op(b), in the micro-kernel's panels of NR images: per
    input row h and panel t, the index (w, c) in turn, NR images each (zeros past N):
        xq[((((h*NP + t)*W + w)*C + c)*NR + j] = x[t*NR + j, c, h, w],  NP = ceil(N / NR)"""
    N, C, H, W = x.shape
    at = 0
    for h in range(H):
        for t in range((N + NR - 1) // NR):
            images = min(NR, N - t * NR)
            for w in range(W):
                for c in range(C):
                    for j in range(images):
                        xq[at + j] = x[t * NR + j, c, h, w]
                    for j in range(images, NR):
                        xq[at + j] = np.float32(0.0)
                    at += NR


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
def _forward_positions(yt, xq, wp, H, W, C, N, K, R, S, pad, groups, P, Q):
    """yt (P, Q, K, N) = the convolution without bias, one task per (output column q, channel
    block). Both operands come in the GEMM's panels, laid out once per call: the filter
    (`_filter_panels`; with N = the batch, packing it per GEMM cost about as much as the product)
    and x (`_batch_panels`). Every output (p, q) sums its GEMMs in the order r, then s."""
    Cg, Kg = C // groups, K // groups
    row_groups = (Kg + MR - 1) // MR
    a_group = np.int64(R * S * Cg * MR)
    b_panel = np.int64(W * C * NR)
    image_panels = (N + NR - 1) // NR
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
                a_at = ((g * row_groups + (k0 - g * Kg) // MR) * R * S + r * S + s) * Cg * MR
                for p in range(p_lo, p_hi):
                    h = p - pad + r
                    beta = np.float32(1.0) if written[p] else np.float32(0.0)
                    b_at = ((h * image_panels * W + w0) * C + g * Cg) * NR
                    gemm_serial_prepacked(yt[((p * Q + q) * K + k0) * N :], N, wp, a_at, a_group, rows, run * Cg,
                                          xq, b_at, b_panel, N, np.float32(1.0), beta)
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
def _filter_panels(wp, w, groups, flip):
    """The filter as `_forward_positions`' GEMMs read op(a), in the panels of the GEMM's register
    tile (gemm_serial_prepacked): per group g, per group rg of MR output channels of
    the convolution run, its taps t = r*S + s, its input channels c, then the MR output channels,
    zeros past the group's channels:
        wp[(((g*RG + rg)*taps + t)*Cin + c)*MR + i] = wf[g*Kout + rg*MR + i, c, t],  RG = ceil(Kout / MR)
    wf = w (Kout = Kg, Cin = Cg) for the forward; for the data gradient (flip) w turned 180 degrees
    with its channels swapped within each group: wf[g*Cg + c', k, t] = w[g*Kg + k, c', taps-1-t]
    (Kout = Cg, Cin = Kg). Each output channel's values are written in one pass (every MR-th value
    of its row group's panels, which stay in L2), reading w along its rows."""
    K, Cg, R, S = w.shape
    Kg, taps = K // groups, R * S
    k_out, c_in = (Cg, Kg) if flip else (Kg, Cg)
    row_groups = (k_out + MR - 1) // MR
    flat = w.reshape(w.size)
    for g in range(groups):
        for rg in range(row_groups):
            out = wp[(g * row_groups + rg) * taps * c_in * MR : (g * row_groups + rg + 1) * taps * c_in * MR]
            for i in range(MR):
                o = rg * MR + i
                if o >= k_out:
                    for j in range(taps * c_in):
                        out[j * MR + i] = np.float32(0.0)
                elif flip:
                    for c in range(c_in):  # w's taps of (k = c, c' = o) are side by side
                        src = flat[((g * Kg + c) * Cg + o) * taps : ((g * Kg + c) * Cg + o + 1) * taps]
                        for t in range(taps):
                            out[(t * c_in + c) * MR + i] = src[taps - 1 - t]
                else:
                    src = flat[(g * Kg + o) * Cg * taps : (g * Kg + o + 1) * Cg * taps]
                    for t in range(taps):
                        for c in range(c_in):
                            out[(t * c_in + c) * MR + i] = src[c * taps + t]


def _panels_size(k_out, c_in, taps, groups):
    return groups * ((k_out + MR - 1) // MR) * MR * taps * c_in


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


def _forward(y, x, wp, b, R, S, pad, groups):
    N, C, H, W = x.shape
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    xq = np.empty(H * ((N + NR - 1) // NR) * NR * W * C, np.float32)
    _batch_panels(xq, x)
    yt = np.empty(y.size, np.float32)
    _forward_positions(yt, xq, wp, H, W, C, N, K, R, S, pad, groups, P, Q)
    _to_nchw_with_bias(y, yt, b)


def small_forward(y, x, w, b, pad, groups):
    """conv2d_forward, stride 1, by output positions (see the module doc)."""
    K, Cg, R, S = w.shape
    wp = np.empty(_panels_size(K // groups, Cg, R * S, groups), np.float32)
    _filter_panels(wp, w, groups, False)
    _forward(y, x, wp, b, R, S, pad, groups)


def small_backward_data(dx, w, dy, pad, groups):
    """dx of a stride-1 convolution: the forward of dy with the flipped filter, channels swapped."""
    K, Cg, R, S = w.shape
    wp = np.empty(_panels_size(Cg, K // groups, R * S, groups), np.float32)
    _filter_panels(wp, w, groups, True)
    _forward(dx, dy, wp, np.zeros(dx.shape[1], np.float32), R, S, R - 1 - pad, groups)


@njit(cache=True, nogil=True)
def _channel_panels(out, a, groups, width):
    """a (N, C, H, W) as GEMM panels of `width` channels (the weight gradient's operands: x as op(b),
    width NR; dy as op(a), width MR): per row h, group g and panel of channels, the index (w, n) in
    turn, `width` channels each (zeros past the group's):
        out[((((h*groups + g)*panels + t)*W + w)*N + n)*width + j] = a[n, g*Cg + t*width + j, h, w]"""
    N, C, H, W = a.shape
    Cg = C // groups
    panels = (Cg + width - 1) // width
    at = 0
    for h in range(H):
        for g in range(groups):
            for t in range(panels):
                cols = min(width, Cg - t * width)
                for w in range(W):
                    for n in range(N):
                        for j in range(cols):
                            out[at + j] = a[n, g * Cg + t * width + j, h, w]
                        for j in range(cols, width):
                            out[at + j] = np.float32(0.0)
                        at += width


def _channel_panels_of(a, groups, width):
    N, C, H, W = a.shape
    out = np.empty(H * groups * ((C // groups + width - 1) // width) * width * W * N, np.float32)
    _channel_panels(out, a, groups, np.int64(width))
    return out


@njit(parallel=True, cache=True, nogil=True)
def _filter_taps(dwt, xb, dya, H, W, C, N, K, R, S, pad, groups, P, Q):
    """dwt (R, S, K, Cg): one task per (tap, channel block), a GEMM per output row p, both operands
    read in place from their panels (`_channel_panels`), laid out once per call (packing them per
    GEMM had cost a third of the pass)."""
    Cg, Kg = C // groups, K // groups
    CP, KG = (Cg + NR - 1) // NR, (Kg + MR - 1) // MR
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
                # op(a)[k, (q, n)] = dy[n, k, p, q]; op(b)[(q, n), c] = x[n, g*Cg + c, h, w0 + q - q_lo].
                a_at = ((((p * groups + g) * KG + (k0 - g * Kg) // MR) * Q + q_lo) * N) * MR
                b_at = ((((h * groups + g) * CP) * W + w0) * N) * NR
                gemm_serial_prepacked(dwt[c_at:], Cg, dya, a_at, Q * N * MR, rows, (q_hi - q_lo) * N,
                                      xb, b_at, W * N * NR, Cg, np.float32(1.0), beta)
                beta = np.float32(1.0)
        if beta == np.float32(0.0):  # the tap never touches the image
            dwt[c_at : c_at + rows * Cg] = np.float32(0.0)


def small_backward_filter(dw, x, dy, pad, groups):
    """dw of a stride-1 convolution by filter taps (see the module doc)."""
    N, C, H, W = x.shape
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    xb, dya = _channel_panels_of(x, groups, NR), _channel_panels_of(dy, groups, MR)
    dwt = np.empty(dw.size, np.float32)
    _filter_taps(dwt, xb, dya, H, W, C, N, K, R, S, pad, groups, P, Q)
    _filter_from_taps(dw, dwt)
