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

The fast launchers turn a chunk of `nc` images and one group into GEMMs on the packed kernel of
`gemm.py`. D = Cg*R*S is the length of a receptive field, L = nc*P*Q the output pixels of the chunk
(column l = i*P*Q + p*Q + q for image n0 + i):
    forward:          y_g (Kg, L)  = w_g (Kg, D) @ patches (L, D).T        patches: a row per output pixel
    backward filter:  dw_g (Kg, D) += dy_g (Kg, L) @ cols (D, L).T          cols: a row per (c, r, s)
    backward data:    dcols (D, L) = w_g.T (D, Kg) @ dy_g (Kg, L)            then col2im adds dcols into dx
The first two are dot-product GEMMs (gemm_nt_serial), both operands read in place along their
long K, except the weight gradient of chunks under PACKED_DW_MAX_COLUMNS pixels (short K: the
demo's 3x3 outputs), which goes to the packed GEMM; the third is the packed GEMM (gemm_serial),
which reads w and dy_g through their strides (its packing does the transpose). patches, cols and
dy_g have row pitches from padded_pitch (whole cache lines, not a multiple of 4 KiB; the forward
GEMM runs over the zeros past D). Chunks of several images give the small late layers
(P*Q = 169) long GEMMs.
Parallelism is over chunks, not inside the GEMMs: each thread runs im2col, GEMM and col2im of its
own chunks (one parallel region per call instead of one per GEMM; the many small regions cost
milliseconds each when the two cores are shared with other processes). Every element of y and dx
belongs to one chunk. dw is summed in PARTS fixed runs of chunks, each in order, and the parts
are then added in order, so results are bit-identical run to run whatever the thread count.
Stride-1 outputs of at most 7x7 (conv2-5 at 67 px) go to conv2d_small.py instead; the larger
3x3 and 5x5 stride-1 convolutions (AlexNet's conv2-conv5 at 227), forward and both backward
passes, to conv2d_winograd.py (1.5-1.8x faster on those layers; see winograd_applies); and
filters of few taps (conv1: 3 channels x 11x11) to conv2d_gather.py, which reads x in place instead of through patches; its data gradient, when asked for, is `_backward`'s
with the weight gradient left out (see conv_path). `conv2d_forward_im2col` and
`conv2d_backward_im2col` remain callable for every geometry, as do `conv2d_forward_gather` and
`conv2d_backward_gather`; `conv2d_forward_winograd` and `conv2d_backward_winograd`,
`conv2d_forward_small` and `conv2d_backward_small` for their geometries. `conv2d_forward_direct` and
`conv2d_backward_direct` are the plain loop nests the fast launchers are tested against.
"""

import numpy as np
from numba import njit, prange

from .conv2d_gather import gather_backward_filter, gather_forward
from .conv2d_small import small_backward_data, small_backward_filter, small_forward
from .conv2d_winograd import winograd_backward_data, winograd_backward_filter, winograd_forward
from .gemm import UNIT_STRIDE, gemm_nt_serial, gemm_serial, padded_pitch
from .machine import CACHES
from .partial_sums import PARTS, split_into_parts, sum_parts
from .simd import LANES

# Output pixels per chunk of images: enough columns for the GEMM to run at speed.
CHUNK_COLUMNS = 1024
# The weight gradient's GEMM sums over a chunk's output pixels. Below this many, the dot-product
# form spends more on its per-element horizontal sums than on multiply-adds (a 3x3 output at
# batch 32: chunks of 72 pixels), and the packed kernel, its K loop free of such sums, is faster.
PACKED_DW_MAX_COLUMNS = 256


# ---------------------------------------------------------------------------------------------
# Layout kernels: im2col, col2im, and the copies of w and dy into the GEMMs' layouts.


@njit(cache=True, nogil=True)
def _patches(patches, pitch, x, n0, nc, c0, Cg, R, S, stride, pad, P, Q):
    """patches[l*pitch + (c*R + r)*S + s] = x[n0 + i, c0 + c, p*stride - pad + r, q*stride - pad + s]
    for l = i*P*Q + p*Q + q (0 outside the image and in the padding up to pitch).

    One output row (i, p) at a time, all its Q patches together: the loop over q then copies
    Q*S values per input row instead of S (3 for a 3x3 filter), and the Q destination lines
    being filled stay in L1.
    """
    H, W = x.shape[2], x.shape[3]
    D = Cg * R * S
    PQ = P * Q
    for ip in range(nc * P):
        i = ip // P
        p = ip - i * P
        l0 = i * PQ + p * Q
        for c in range(Cg):
            for r in range(R):
                h = p * stride - pad + r
                base = (c * R + r) * S
                if h < 0 or h >= H:
                    for q in range(Q):
                        out = patches[(l0 + q) * pitch + base : (l0 + q) * pitch + base + S]
                        for s in range(S):
                            out[s] = np.float32(0.0)
                    continue
                x_row = x[n0 + i, c0 + c, h]
                for q in range(Q):
                    out = patches[(l0 + q) * pitch + base : (l0 + q) * pitch + base + S]
                    w0 = q * stride - pad
                    for s in range(S):
                        w = w0 + s
                        out[s] = x_row[w] if 0 <= w < W else np.float32(0.0)
        for q in range(Q):
            tail = patches[(l0 + q) * pitch + D : (l0 + q + 1) * pitch]
            for d in range(pitch - D):
                tail[d] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _cols(cols, pitch, x, n0, nc, c0, Cg, R, S, stride, pad, P, Q):
    """cols[((c*R + r)*S + s)*pitch + l] = x[n0 + i, c0 + c, p*stride - pad + r, q*stride - pad + s]
    for l = i*P*Q + p*Q + q (0 outside the image and in the padding up to pitch)."""
    H, W = x.shape[2], x.shape[3]
    PQ = P * Q
    for crs in range(Cg * R * S):
        c = crs // (R * S)
        r = (crs // S) % R
        s = crs % S
        row = cols[crs * pitch : (crs + 1) * pitch]
        for i in range(nc):
            for p in range(P):
                h = p * stride - pad + r
                out = row[i * PQ + p * Q : i * PQ + (p + 1) * Q]
                if h < 0 or h >= H:
                    for q in range(Q):
                        out[q] = np.float32(0.0)
                    continue
                x_row = x[n0 + i, c0 + c, h]
                for q in range(Q):
                    w = q * stride - pad + s
                    out[q] = x_row[w] if 0 <= w < W else np.float32(0.0)
        for l in range(nc * PQ, pitch):
            row[l] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _col2im(dx, dcols, pitch, n0, nc, c0, Cg, R, S, stride, pad, P, Q):
    """dx[n0 + i, c0 + c, h, w] = sum of dcols[((c*R + r)*S + s)*pitch + i*P*Q + p*Q + q] over the
    (r, s, p, q) that land on (h, w). One task per (image, channel): each element of dx is summed
    by one thread, in a fixed order."""
    H, W = dx.shape[2], dx.shape[3]
    PQ = P * Q
    for ic in range(nc * Cg):
        i = ic // Cg
        c = ic - i * Cg
        plane = dx[n0 + i, c0 + c]
        for h in range(H):
            for w in range(W):
                plane[h, w] = np.float32(0.0)
        for r in range(R):
            for s in range(S):
                row = dcols[((c * R + r) * S + s) * pitch + i * PQ : ((c * R + r) * S + s) * pitch + (i + 1) * PQ]
                for p in range(P):
                    h = p * stride - pad + r
                    if h < 0 or h >= H:
                        continue
                    out = plane[h]
                    for q in range(Q):
                        w = q * stride - pad + s
                        if 0 <= w < W:
                            out[w] += row[p * Q + q]


@njit(cache=True, nogil=True)
def _output_from_columns(y, y_cols, pitch, b, n0, nc, k0, Kg):
    """y[n0 + i, k0 + k, p, q] = y_cols[k*pitch + i*P*Q + p*Q + q] + b[k0 + k]."""
    PQ = y.shape[2] * y.shape[3]
    for ik in range(nc * Kg):
        i = ik // Kg
        k = ik - i * Kg
        out = y[n0 + i, k0 + k].reshape(-1)
        src = y_cols[k * pitch + i * PQ : k * pitch + (i + 1) * PQ]
        bias = b[k0 + k]
        for l in range(PQ):
            out[l] = src[l] + bias


@njit(cache=True, nogil=True)
def _dy_rows(dy_rows, pitch, dy, n0, nc, k0, Kg):
    """dy_rows[k*pitch + i*P*Q + p*Q + q] = dy[n0 + i, k0 + k, p, q] (0 in the padding up to pitch)."""
    PQ = dy.shape[2] * dy.shape[3]
    for k in range(Kg):
        row = dy_rows[k * pitch : (k + 1) * pitch]
        for i in range(nc):
            src = dy[n0 + i, k0 + k].reshape(-1)
            for l in range(PQ):
                row[i * PQ + l] = src[l]
        for l in range(nc * PQ, pitch):
            row[l] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _weight_rows(w_rows, pitch, w):
    """w_rows[k*pitch + d] = w[k, d] for w seen as (K, D) (0 in the padding up to pitch)."""
    K, D = w.shape
    for k in range(K):
        for d in range(D):
            w_rows[k * pitch + d] = w[k, d]
        for d in range(D, pitch):
            w_rows[k * pitch + d] = np.float32(0.0)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
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


# ---------------------------------------------------------------------------------------------
# Launchers


def _chunking(N, PQ):
    """(images per chunk, number of chunks): chunks of about CHUNK_COLUMNS output pixels, their
    number a multiple of PARTS (so 1, 2 or 4 threads get equal shares) unless there are fewer
    images than that."""
    chunks = max(1, round(N * PQ / CHUNK_COLUMNS))
    chunks = min(N, (chunks + PARTS - 1) // PARTS * PARTS)
    per_chunk = (N + chunks - 1) // chunks
    return per_chunk, (N + per_chunk - 1) // per_chunk


@njit(parallel=True, cache=True, nogil=True)
def _forward(y, x, w_rows, d_pitch, b, R, S, stride, pad, groups, nc, chunks):
    """One task per chunk of nc images: im2col, GEMM and bias, all on the task's thread."""
    N, C = x.shape[0], x.shape[1]
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    Cg, Kg, PQ = C // groups, K // groups, P * Q
    l_pitch = padded_pitch(nc * PQ)
    for t in prange(chunks):
        n0 = t * nc
        m = min(nc, N - n0)
        patches = np.empty(m * PQ * d_pitch, dtype=np.float32)
        y_cols = np.empty(Kg * l_pitch, dtype=np.float32)
        for g in range(groups):
            _patches(patches, d_pitch, x, n0, m, g * Cg, Cg, R, S, stride, pad, P, Q)
            gemm_nt_serial(y_cols, l_pitch, w_rows[g * Kg * d_pitch :], d_pitch, patches, d_pitch,
                           Kg, m * PQ, d_pitch, np.float32(1.0), np.float32(0.0))
            _output_from_columns(y, y_cols, l_pitch, b, n0, m, g * Kg, Kg)


@njit(parallel=True, cache=True, nogil=True)
def _backward(dx, dw_parts, x, w_flat, dy, R, S, stride, pad, groups, nc, chunks, chunks_per_part, need_dx,
              need_dw):
    """One task per part (a run of chunks): dw_parts[part] = that part's share of dw (when need_dw),
    and dx of its images (when need_dx). Each part walks its chunks in order, so the sums do not
    depend on the threads."""
    N, C = x.shape[0], x.shape[1]
    K, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
    Cg, Kg, PQ = C // groups, K // groups, P * Q
    D = Cg * R * S
    l_pitch = padded_pitch(nc * PQ)
    for part in prange(dw_parts.shape[0]):
        dw_part = dw_parts[part]
        cols = np.empty(D * l_pitch, dtype=np.float32)
        dy_rows = np.empty(Kg * l_pitch, dtype=np.float32)
        first = part * chunks_per_part
        for t in range(first, min(chunks, first + chunks_per_part)):
            n0 = t * nc
            m = min(nc, N - n0)
            # The chunk's K dimension (its output pixels, padded) has its own pitch.
            pitch = padded_pitch(m * PQ)
            beta = np.float32(0.0) if t == first else np.float32(1.0)
            for g in range(groups):
                _dy_rows(dy_rows, pitch, dy, n0, m, g * Kg, Kg)
                if need_dw:
                    _cols(cols, pitch, x, n0, m, g * Cg, Cg, R, S, stride, pad, P, Q)
                    if m * PQ < PACKED_DW_MAX_COLUMNS:
                        # dw_g (Kg, D) += dy_rows (Kg, L) @ cols (D, L).T on the packed kernel, cols
                        # read through transposed strides (its packing does the transpose).
                        gemm_serial(dw_part[g * Kg * D :], D, dy_rows, pitch, UNIT_STRIDE, cols, UNIT_STRIDE, pitch,
                                    Kg, D, m * PQ, np.float32(1.0), beta)
                    else:
                        gemm_nt_serial(dw_part[g * Kg * D :], D, dy_rows, pitch, cols, pitch,
                                       Kg, D, pitch, np.float32(1.0), beta)
                if need_dx:
                    # cols has been used: its memory now takes the gradient of the columns,
                    # dcols[d, l] = sum_k w[g*Kg + k, d] * dy_rows[k, l], w read in place.
                    gemm_serial(cols, pitch, w_flat[g * Kg * D :], UNIT_STRIDE, D, dy_rows, pitch, UNIT_STRIDE,
                                D, pitch, Kg, np.float32(1.0), np.float32(0.0))
                    _col2im(dx, cols, pitch, n0, m, g * Cg, Cg, R, S, stride, pad, P, Q)


# Winograd's 2x2 output tiles waste work on small outputs (a 3x3 output fills 9 of 16) and the
# GEMMs over a few tiles are short: measured at batch 32, 3x3 outputs ran 1.6x slower than im2col,
# 7x7 outputs (the demo's conv2) as fast forward and 1.3x faster backward, 13x13 1.6-1.8x faster.
WINOGRAD_MIN_OUTPUT = 7
WINOGRAD_MIN_TILES = 256


def winograd_applies(w, stride, y_shape):
    """Does the Winograd path take this layer: a 3x3 or 5x5 filter, stride 1, an output of at least
    WINOGRAD_MIN_OUTPUT in both directions and WINOGRAD_MIN_TILES 2x2 tiles over the batch."""
    N, _, P, Q = y_shape
    return (stride == 1 and w.shape[2] == w.shape[3] and w.shape[2] in (3, 5)
            and min(P, Q) >= WINOGRAD_MIN_OUTPUT and N * ((P + 1) // 2) * ((Q + 1) // 2) >= WINOGRAD_MIN_TILES)


# Outputs of at most this size in both directions (stride 1) go by output positions
# (conv2d_small.py), ahead of Winograd. Measured at batch 32 on two threads (Zen 3,
# bench/results/cpu-amd-epyc-zen3.md, "Small outputs"): 3x3 filters on 5x5 maps 1.5x faster than
# Winograd both ways, on 7x7 maps the same, on 13x13 1.5x slower; conv2's 5x5 filters on its 7x7
# map at 67 px 1.2-1.4x faster forward and 1.0-1.2x backward, on 9x9 maps 0.9x.
SMALL_MAX_OUTPUT = 7

# Filters of at most this many taps (Cg*R*S) read x in place (conv2d_gather.py): one block of 16
# output channels' filter, taps x 64 bytes, then stays in L1d while the x of a band of outputs
# passes (conv1: 363 taps, 23 KB; conv2-5 have 1,200-3,456). im2col instead copies each input
# value about (R/stride)*(S/stride) times (7.6 for conv1) into patches (4.4 MB per 227-px image,
# past L2) that its dot-product GEMM then reads back. Measured on conv1 at batch 32, one thread's
# CPU time: forward and weight gradient 2.2-2.6x faster than im2col at 227 and 67 px.
GATHER_MAX_TAPS = CACHES["L1d"] // (LANES * 4)


def conv_path(w, stride, y_shape):
    """Which kernels take this layer: "winograd", "small", "gather" or "im2col"."""
    if stride == 1 and max(y_shape[2], y_shape[3]) <= SMALL_MAX_OUTPUT:
        return "small"
    if winograd_applies(w, stride, y_shape):
        return "winograd"
    if w.shape[1] * w.shape[2] * w.shape[3] <= GATHER_MAX_TAPS:
        return "gather"
    return "im2col"


def conv2d_forward(y, x, w, b, stride, pad, groups):
    """y = conv(x, w) + b (see the module doc for the formula and layouts)."""
    path = conv_path(w, stride, y.shape)
    forward = {"winograd": conv2d_forward_winograd, "small": conv2d_forward_small,
               "gather": conv2d_forward_gather}.get(path, conv2d_forward_im2col)
    forward(y, x, w, b, stride, pad, groups)


def conv2d_backward(dx, dw, db, x, w, dy, stride, pad, groups):
    """dx (skipped when None), dw and db of the convolution (see the module doc)."""
    path = conv_path(w, stride, dy.shape)
    backward = {"winograd": conv2d_backward_winograd, "small": conv2d_backward_small,
                "gather": conv2d_backward_gather}.get(path, conv2d_backward_im2col)
    backward(dx, dw, db, x, w, dy, stride, pad, groups)


def conv2d_forward_winograd(y, x, w, b, stride, pad, groups):
    """conv2d_forward for 3x3 and 5x5 filters with stride 1 (conv2d_winograd.py)."""
    winograd_forward(y, x, w, b, pad, groups)


def conv2d_backward_winograd(dx, dw, db, x, w, dy, stride, pad, groups):
    """conv2d_backward for 3x3 and 5x5 filters with stride 1 (conv2d_winograd.py)."""
    if dx is not None:
        winograd_backward_data(dx, w, dy, pad, groups)
    winograd_backward_filter(dw, x, dy, pad, groups)
    _bias_gradient(db, dy)


def conv2d_forward_small(y, x, w, b, stride, pad, groups):
    """conv2d_forward for stride 1, by output positions (conv2d_small.py)."""
    if stride != 1:
        raise ValueError(f"conv2d_forward_small: stride must be 1, got {stride}")
    small_forward(y, x, w, b, pad, groups)


def conv2d_backward_small(dx, dw, db, x, w, dy, stride, pad, groups):
    """conv2d_backward for stride 1, by output positions and filter taps (conv2d_small.py)."""
    if stride != 1:
        raise ValueError(f"conv2d_backward_small: stride must be 1, got {stride}")
    # The filter gradient first: the data gradient runs the forward's kernel, which a cold first run
    # compiles in its other warm-up process meanwhile (refnet/commands/jit_warmup.py).
    small_backward_filter(dw, x, dy, pad, groups)
    if dx is not None:
        small_backward_data(dx, w, dy, pad, groups)
    _bias_gradient(db, dy)


def conv2d_forward_im2col(y, x, w, b, stride, pad, groups):
    """conv2d_forward for any geometry, on im2col and GEMM."""
    K, Cg, R, S = w.shape
    D = Cg * R * S
    nc, chunks = _chunking(x.shape[0], y.shape[2] * y.shape[3])
    d_pitch = padded_pitch(D)
    w_rows = np.empty(K * d_pitch, dtype=np.float32)
    _weight_rows(w_rows, d_pitch, w.reshape(K, D))
    _forward(y, x, w_rows, d_pitch, b, R, S, stride, pad, groups, nc, chunks)


def conv2d_backward_im2col(dx, dw, db, x, w, dy, stride, pad, groups):
    """conv2d_backward for any geometry, on im2col and GEMM."""
    N = x.shape[0]
    K, Cg, R, S = w.shape
    Kg, D = K // groups, Cg * R * S
    nc, chunks = _chunking(N, dy.shape[2] * dy.shape[3])
    chunks_per_part, parts = split_into_parts(chunks)
    need_dx = dx is not None
    dw_parts = np.empty((parts, K * D), dtype=np.float32)
    _backward(dx if need_dx else x, dw_parts, x, w.reshape(-1), dy, R, S, stride, pad, groups, nc, chunks,
              chunks_per_part, need_dx, True)
    sum_parts(dw.reshape(-1), dw_parts)
    _bias_gradient(db, dy)


def _backward_data_im2col(dx, x, w, dy, stride, pad, groups):
    """dx alone, on im2col's GEMM and col2im (the gather path's data gradient)."""
    K, Cg, R, S = w.shape
    nc, chunks = _chunking(x.shape[0], dy.shape[2] * dy.shape[3])
    chunks_per_part, parts = split_into_parts(chunks)
    _backward(dx, np.empty((parts, 1), dtype=np.float32), x, w.reshape(-1), dy, R, S, stride, pad, groups, nc,
              chunks, chunks_per_part, True, False)


def conv2d_forward_gather(y, x, w, b, stride, pad, groups):
    """conv2d_forward for any geometry, x read in place by the taps (conv2d_gather.py)."""
    gather_forward(y, x, w, b, stride, pad, groups)


def conv2d_backward_gather(dx, dw, db, x, w, dy, stride, pad, groups):
    """conv2d_backward: dw by the taps (conv2d_gather.py), dx (when wanted) on im2col."""
    if dx is not None:
        _backward_data_im2col(dx, x, w, dy, stride, pad, groups)
    gather_backward_filter(dw, x, dy, stride, pad, groups)
    _bias_gradient(db, dy)


# ---------------------------------------------------------------------------------------------
# The simple kernels: direct loop nests, the reference of the launchers above.


@njit(parallel=True, cache=True, nogil=True)
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


@njit(parallel=True, cache=True, nogil=True)
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


@njit(parallel=True, cache=True, nogil=True)
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
