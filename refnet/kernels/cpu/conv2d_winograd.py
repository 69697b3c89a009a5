"""Stride-1 convolution by Winograd's minimal filtering on the CPU (Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", 2015): F(2x2, 3x3) for AlexNet's conv3, conv4 and conv5,
F(2x2, 5x5) for conv2; the backward-data pass of each (a stride-1 convolution of dy with the
filters turned by 180 degrees) and the backward-filter pass (see its section below).

    y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*Cg + c, p - pad + r, q - pad + s]
    (the formula of conv2d.py with stride 1, R = S = 3 or 5; x is 0 outside the image)

F(2x2, 3x3) is written out below; F(2x2, 5x5) works the same way on 6x6 blocks with the
matrices written out with its functions further down (36 GEMMs, 2.6x fewer multiply-adds than the direct sum on
conv2's 27x27 outputs).

Each 2x2 block of outputs (a tile; tile t = (i, tp, tq) covers y[n0 + i, :, 2tp : 2tp+2, 2tq : 2tq+2])
is computed from the 4x4 block d of input under it as
    Y = A^T [ sum_c U[k, c] * V[c, t] ] A,   U = G w[k, c] G^T (4x4),   V = B^T d B (4x4),
    B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
    A^T = [1 1 1 0; 0 1 -1 -1]
(elementwise product inside the sum). For each of the 16 positions e of the 4x4 transforms the sum
over c is a GEMM: M[e] (Kg, T) = U[e] (Kg, Cg) @ V[e] (Cg, T), 16 GEMMs with 2.25x fewer
multiply-adds in all than the direct convolution (1.9x on 13x13 outputs, whose 7x7 tiles cover
14x14). The result differs from the direct sum only by float32 rounding: measured on the test
shapes, about 2e-7 of the largest output for F(2x2, 3x3) (its transforms add, subtract and
halve) and 2e-6 for F(2x2, 5x5) (its transforms scale by up to 16 and 1/24).

Layouts (float32): x (N, C, H, W), w (K, Cg, R, R), b (K,), y (N, K, P, Q) as in conv2d.py;
U (groups, E, Kg, Cg) with E = 16 (3x3) or 36 (5x5); per chunk of nc images, V (E blocks of
(Cg, pitch)) and M (E blocks of (Kg, pitch)), the blocks spread_stride() apart, with
T = nc*TP*TQ tiles (TP = ceil(P/2), TQ = ceil(Q/2)), tile index t = (i*TP + tp)*TQ + tq, and pitch
= padded_pitch(T) (zeros past T). One GEMM per element e of the tiles: gemm_serial's in the forward
(rows of V along the tiles), and for the weight gradient (V read through transposed strides).
Parallelism is over runs of consecutive chunks of images, each run on one thread with its scratch
allocated once: every output belongs to one chunk, so results are bit-identical run to run
whatever the thread count.
"""

import numpy as np
from numba import njit, prange

from .gemm import UNIT_STRIDE, gemm_serial, padded_pitch
from .partial_sums import split_into_parts, sum_parts

# Tiles per chunk of images: enough columns for the GEMMs to run at speed (measured on conv3:
# 46, 66, 77 and 67 GFLOP/s on one core with 98, 196, 392 and 784 tiles).
CHUNK_TILES = 392
# At least this many chunks when the batch allows (the threads share out chunks: the demo's 3x3
# outputs make 4 tiles per image, and 392 tiles would put a whole batch on one thread).
MIN_CHUNKS = 4


@njit(cache=True, nogil=True)
def spread_stride(length):
    """The distance between the blocks of V or M (16 or 36): at least `length`, a whole number of
    cache lines, and an odd number of them, so that the values of one tile (one per block), written
    or read together, fall on different L1 sets (an odd stride reaches all 64 sets before
    repeating). (With blocks a multiple of 4 KiB apart, as AlexNet's shapes give, they all share
    one set: the input transform ran 4x slower.)"""
    lines = (length + 15) // 16
    return (lines if lines % 2 == 1 else lines + 1) * 16


@njit(parallel=True, cache=True, nogil=True)
def filter_transform(u, w, backward):
    """The 16 values of G f G^T for every 3x3 filter f of w (K, Cg, 3, 3), Kg = K / groups:
    forward:  u (groups, 16, Kg, Cg), u[g, e, kk, c] = (G w[g*Kg + kk, c] G^T)[e // 4, e % 4];
    backward: u (groups, 16, Cg, Kg), u[g, e, c, kk] = the same of w[g*Kg + kk, c] turned by 180
              degrees (the filters of the backward-data convolution)."""
    groups = u.shape[0]
    K, Cg = w.shape[0], w.shape[1]
    Kg = K // groups
    half = np.float32(0.5)
    flat = u.reshape(-1)
    for gk in prange(groups * Kg):
        g = gk // Kg
        kk = gk - g * Kg
        for c in range(Cg):
            f = w[gk, c]
            f00, f01, f02, f10, f11, f12, f20, f21, f22 = (
                f[0, 0], f[0, 1], f[0, 2], f[1, 0], f[1, 1], f[1, 2], f[2, 0], f[2, 1], f[2, 2])
            if backward:
                f00, f01, f02, f10, f12, f20, f21, f22 = f22, f21, f20, f12, f10, f02, f01, f00
            # t = G f (4 rows of 3), then u = t G^T
            t00, t01, t02 = f00, f01, f02
            t10, t11, t12 = half * (f00 + f10 + f20), half * (f01 + f11 + f21), half * (f02 + f12 + f22)
            t20, t21, t22 = half * (f00 - f10 + f20), half * (f01 - f11 + f21), half * (f02 - f12 + f22)
            t30, t31, t32 = f20, f21, f22
            if backward:
                at, step = (g * 16 * Cg + c) * Kg + kk, Cg * Kg
            else:
                at, step = (g * 16 * Kg + kk) * Cg + c, Kg * Cg
            flat[at], flat[at + step] = t00, half * (t00 + t01 + t02)
            flat[at + 2 * step], flat[at + 3 * step] = half * (t00 - t01 + t02), t02
            at += 4 * step
            flat[at], flat[at + step] = t10, half * (t10 + t11 + t12)
            flat[at + 2 * step], flat[at + 3 * step] = half * (t10 - t11 + t12), t12
            at += 4 * step
            flat[at], flat[at + step] = t20, half * (t20 + t21 + t22)
            flat[at + 2 * step], flat[at + 3 * step] = half * (t20 - t21 + t22), t22
            at += 4 * step
            flat[at], flat[at + step] = t30, half * (t30 + t31 + t32)
            flat[at + 2 * step], flat[at + 3 * step] = half * (t30 - t31 + t32), t32


@njit(cache=True, nogil=True)
def _clear(padded):
    for h in range(padded.shape[0]):
        for col in range(padded.shape[1]):
            padded[h, col] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _place(padded, plane, pad):
    """Copy the image plane into the zeroed scratch at (pad, pad); what it does not reach stays 0
    (pad < 0 crops the image instead)."""
    H, W = plane.shape
    PH, PW = padded.shape
    for h in range(max(0, -pad), min(H, PH - pad)):
        src = plane[h]
        dst = padded[h + pad]
        for col in range(max(0, -pad), min(W, PW - pad)):
            dst[col + pad] = src[col]


@njit(cache=True, nogil=True)
def _zero_tails(v, e_stride, E, start, end):
    """v[e*e_stride + start : e*e_stride + end] = 0 for the E blocks (the padding of a row of V)."""
    for e in range(E):
        for t in range(e * e_stride + start, e * e_stride + end):
            v[t] = np.float32(0.0)


@njit(cache=True, nogil=True)
def _input_transform(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ):
    """v[e*e_stride + c*pitch + t] = (B^T d B)[e // 4, e % 4], d = the 4x4 input block of tile t in
    channel c0 + c (rows 2tp - pad .., columns 2tq - pad .., 0 outside the image); 0 for t >= T.
    `padded` is scratch for one plane with its zero border, (2*TP + 2, 2*TQ + 2): every block
    is then read without a bounds check."""
    T = nc * TP * TQ
    _clear(padded)
    for c in range(Cg):
        for i in range(nc):
            _place(padded, x[n0 + i, c0 + c], pad)
            for tp in range(TP):
                r0, r1, r2, r3 = padded[2 * tp], padded[2 * tp + 1], padded[2 * tp + 2], padded[2 * tp + 3]
                at = c * pitch + (i * TP + tp) * TQ
                for tq in range(TQ):
                    q = 2 * tq
                    # rows: (B^T d)[r, s] for the four columns s
                    a00, a01, a02, a03 = r0[q] - r2[q], r0[q + 1] - r2[q + 1], r0[q + 2] - r2[q + 2], r0[q + 3] - r2[q + 3]
                    a10, a11, a12, a13 = r1[q] + r2[q], r1[q + 1] + r2[q + 1], r1[q + 2] + r2[q + 2], r1[q + 3] + r2[q + 3]
                    a20, a21, a22, a23 = r2[q] - r1[q], r2[q + 1] - r1[q + 1], r2[q + 2] - r1[q + 2], r2[q + 3] - r1[q + 3]
                    a30, a31, a32, a33 = r1[q] - r3[q], r1[q + 1] - r3[q + 1], r1[q + 2] - r3[q + 2], r1[q + 3] - r3[q + 3]
                    # columns: (B^T d B)[r, :]
                    o = at + tq
                    v[o], v[o + e_stride] = a00 - a02, a01 + a02
                    v[o + 2 * e_stride], v[o + 3 * e_stride] = a02 - a01, a01 - a03
                    o += 4 * e_stride
                    v[o], v[o + e_stride] = a10 - a12, a11 + a12
                    v[o + 2 * e_stride], v[o + 3 * e_stride] = a12 - a11, a11 - a13
                    o += 4 * e_stride
                    v[o], v[o + e_stride] = a20 - a22, a21 + a22
                    v[o + 2 * e_stride], v[o + 3 * e_stride] = a22 - a21, a21 - a23
                    o += 4 * e_stride
                    v[o], v[o + e_stride] = a30 - a32, a31 + a32
                    v[o + 2 * e_stride], v[o + 3 * e_stride] = a32 - a31, a31 - a33
        _zero_tails(v, e_stride, np.int64(16), c * pitch + T, (c + 1) * pitch)


@njit(cache=True, nogil=True)
def _output_transform(y, m, e_stride, pitch, b, has_bias, n0, nc, k0, Kg, TP, TQ):
    """y[n0 + i, k0 + kk, 2tp + a, 2tq + bb] = (A^T M A)[a, bb] + b[k0 + kk] for the outputs inside
    P x Q, M[e] = m[e*e_stride + kk*pitch + t]."""
    P, Q = y.shape[2], y.shape[3]
    for kk in range(Kg):
        bias = b[k0 + kk] if has_bias else np.float32(0.0)
        for i in range(nc):
            plane = y[n0 + i, k0 + kk]
            for tp in range(TP):
                for tq in range(TQ):
                    t = kk * pitch + (i * TP + tp) * TQ + tq
                    # z_r = (M A)[r, :] for the 4 rows r of M, then Y = A^T z
                    m00, m01, m02, m03 = m[t], m[e_stride + t], m[2 * e_stride + t], m[3 * e_stride + t]
                    m10, m11, m12, m13 = m[4 * e_stride + t], m[5 * e_stride + t], m[6 * e_stride + t], m[7 * e_stride + t]
                    m20, m21, m22, m23 = m[8 * e_stride + t], m[9 * e_stride + t], m[10 * e_stride + t], m[11 * e_stride + t]
                    m30, m31, m32, m33 = m[12 * e_stride + t], m[13 * e_stride + t], m[14 * e_stride + t], m[15 * e_stride + t]
                    s00, s01 = m00 + m01 + m02, m01 - m02 - m03
                    s10, s11 = m10 + m11 + m12, m11 - m12 - m13
                    s20, s21 = m20 + m21 + m22, m21 - m22 - m23
                    s30, s31 = m30 + m31 + m32, m31 - m32 - m33
                    p0 = 2 * tp
                    q0 = 2 * tq
                    plane[p0, q0] = s00 + s10 + s20 + bias
                    if q0 + 1 < Q:
                        plane[p0, q0 + 1] = s01 + s11 + s21 + bias
                    if p0 + 1 < P:
                        plane[p0 + 1, q0] = s10 - s20 - s30 + bias
                        if q0 + 1 < Q:
                            plane[p0 + 1, q0 + 1] = s11 - s21 - s31 + bias


# ---------------------------------------------------------------------------------------------
# F(2x2, 5x5) (conv2 and its backward-data): 6x6 blocks, 36 GEMMs. The transforms of one dimension
# (points 0, 1, -1, 2, -2 and infinity; derived by Toom-Cook and checked against the direct sum):
#     B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
#     G   = [1/4 0 0 0 0; -1/6 -1/6 -1/6 -1/6 -1/6; -1/6 1/6 -1/6 1/6 -1/6;
#            1/24 1/12 1/6 1/3 2/3; 1/24 -1/12 1/6 -1/3 2/3; 0 0 0 0 1]
#     A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
# each applied to the rows and then the columns of a block.


@njit(cache=True, nogil=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):
    four, five, two = np.float32(4.0), np.float32(5.0), np.float32(2.0)
    return (four * d0 - five * d2 + d4,
            d3 + d4 - four * (d1 + d2),
            d4 - d3 + four * (d1 - d2),
            d4 - d2 + two * (d3 - d1),
            d4 - d2 + two * (d1 - d3),
            four * d1 - five * d3 + d5)


@njit(cache=True, nogil=True, inline="always")
def _g6(f0, f1, f2, f3, f4):
    sixth, quarter, twentyfourth = np.float32(1.0 / 6.0), np.float32(0.25), np.float32(1.0 / 24.0)
    two, four, eight, sixteen = np.float32(2.0), np.float32(4.0), np.float32(8.0), np.float32(16.0)
    even = f0 + f2 + f4
    odd = f1 + f3
    return (quarter * f0,
            -sixth * (even + odd),
            -sixth * (even - odd),
            twentyfourth * (f0 + four * f2 + sixteen * f4 + two * f1 + eight * f3),
            twentyfourth * (f0 + four * f2 + sixteen * f4 - two * f1 - eight * f3),
            f4)


@njit(parallel=True, cache=True, nogil=True)
def filter_transform5(u, w, backward):
    """As filter_transform, for 5x5 filters: u (groups, 36, Kg, Cg) (forward) or (groups, 36, Cg, Kg)
    (backward, the filters turned by 180 degrees), u[.., e, ..] = (G f G^T)[e // 6, e % 6]."""
    groups = u.shape[0]
    K, Cg = w.shape[0], w.shape[1]
    Kg = K // groups
    for gk in prange(groups * Kg):
        g = gk // Kg
        kk = gk - g * Kg
        t = np.empty((6, 5), dtype=np.float32)
        for c in range(Cg):
            f = w[gk, c]
            if backward:
                f = f[::-1, ::-1]
            for s in range(5):
                t[0, s], t[1, s], t[2, s], t[3, s], t[4, s], t[5, s] = _g6(f[0, s], f[1, s], f[2, s], f[3, s], f[4, s])
            for r in range(6):
                row = _g6(t[r, 0], t[r, 1], t[r, 2], t[r, 3], t[r, 4])
                for j in range(6):
                    if backward:
                        u[g, 6 * r + j, c, kk] = row[j]
                    else:
                        u[g, 6 * r + j, kk, c] = row[j]


@njit(cache=True, nogil=True)
def _input_transform5(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ):
    """As _input_transform, for 6x6 blocks: v[e*e_stride + c*pitch + t] = (B^T d B)[e // 6, e % 6].
    Per row of tiles, B^T d for every column of the plane at once (a loop along the columns), then
    each tile's (B^T d) B written along the tiles, where V's rows are contiguous."""
    T = nc * TP * TQ
    width = padded.shape[1]
    half_done = np.empty((6, width), dtype=np.float32)  # half_done[r, col] = (B^T d)[r] of column col
    h0, h1, h2, h3, h4, h5 = half_done[0], half_done[1], half_done[2], half_done[3], half_done[4], half_done[5]
    _clear(padded)
    for c in range(Cg):
        for i in range(nc):
            _place(padded, x[n0 + i, c0 + c], pad)
            for tp in range(TP):
                d0, d1, d2 = padded[2 * tp], padded[2 * tp + 1], padded[2 * tp + 2]
                d3, d4, d5 = padded[2 * tp + 3], padded[2 * tp + 4], padded[2 * tp + 5]
                for col in range(width):
                    h0[col], h1[col], h2[col], h3[col], h4[col], h5[col] = _bt6(
                        d0[col], d1[col], d2[col], d3[col], d4[col], d5[col])
                at = c * pitch + (i * TP + tp) * TQ
                for r in range(6):
                    h = half_done[r]
                    o = at + 6 * r * e_stride
                    v0, v1, v2 = v[o : o + TQ], v[o + e_stride :][:TQ], v[o + 2 * e_stride :][:TQ]
                    o += 3 * e_stride
                    v3, v4, v5 = v[o : o + TQ], v[o + e_stride :][:TQ], v[o + 2 * e_stride :][:TQ]
                    for tq in range(TQ):
                        q = 2 * tq
                        v0[tq], v1[tq], v2[tq], v3[tq], v4[tq], v5[tq] = _bt6(
                            h[q], h[q + 1], h[q + 2], h[q + 3], h[q + 4], h[q + 5])
        _zero_tails(v, e_stride, np.int64(36), c * pitch + T, (c + 1) * pitch)


@njit(cache=True, nogil=True)
def _output_transform5(y, m, e_stride, pitch, b, has_bias, n0, nc, k0, Kg, TP, TQ):
    """As _output_transform, for 6x6 blocks: M[e] = m[e*e_stride + kk*pitch + t]. Each step runs
    along the tiles t, where M's rows are contiguous (loops the compiler vectorises; tile by tile,
    the 36 values of a tile lie e_stride apart): z = M A for all tiles of an output channel, then
    A^T z, then the 2x2 blocks out to y."""
    P, Q = y.shape[2], y.shape[3]
    T = nc * TP * TQ
    two = np.float32(2.0)
    z = np.empty((12, T), dtype=np.float32)  # z[2r + j, t] = (M A)[r, j] of tile t
    blocks = np.empty((4, T), dtype=np.float32)  # blocks[2a + j, t] = Y[a, j] + bias
    for kk in range(Kg):
        bias = b[k0 + kk] if has_bias else np.float32(0.0)
        for r in range(6):
            at = 6 * r * e_stride + kk * pitch
            m0, m1, m2 = m[at : at + T], m[at + e_stride :][:T], m[at + 2 * e_stride :][:T]
            at += 3 * e_stride
            m3, m4, m5 = m[at : at + T], m[at + e_stride :][:T], m[at + 2 * e_stride :][:T]
            z0, z1 = z[2 * r], z[2 * r + 1]
            for t in range(T):
                z0[t] = m0[t] + m1[t] + m2[t] + m3[t] + m4[t]
                z1[t] = m1[t] - m2[t] + two * (m3[t] - m4[t]) + m5[t]
        for j in range(2):
            z0, z1, z2, z3, z4, z5 = z[j], z[2 + j], z[4 + j], z[6 + j], z[8 + j], z[10 + j]
            top, bottom = blocks[j], blocks[2 + j]
            for t in range(T):
                top[t] = z0[t] + z1[t] + z2[t] + z3[t] + z4[t] + bias
                bottom[t] = z1[t] - z2[t] + two * (z3[t] - z4[t]) + z5[t] + bias
        for i in range(nc):
            plane = y[n0 + i, k0 + kk]
            for tp in range(TP):
                p0 = 2 * tp
                t0 = (i * TP + tp) * TQ
                for tq in range(TQ):
                    q0 = 2 * tq
                    plane[p0, q0] = blocks[0, t0 + tq]
                    if q0 + 1 < Q:
                        plane[p0, q0 + 1] = blocks[1, t0 + tq]
                    if p0 + 1 < P:
                        plane[p0 + 1, q0] = blocks[2, t0 + tq]
                        if q0 + 1 < Q:
                            plane[p0 + 1, q0 + 1] = blocks[3, t0 + tq]


@njit(cache=True, nogil=True)
def _transform_input(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ, block):
    """V of a chunk for 4x4 (F(2x2, 3x3)) or 6x6 (F(2x2, 5x5)) blocks: _input_transform(5)."""
    if block == 4:
        _input_transform(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ)
    else:
        _input_transform5(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ)


@njit(parallel=True, cache=True, nogil=True)
def _winograd(y, x, u, b, has_bias, pad, nc, chunks, chunks_per_run):
    """u (groups, E, Kg, Cg): E = 16 for F(2x2, 3x3), 36 for F(2x2, 5x5). One task per run of
    chunks_per_run consecutive chunks, its scratch allocated once for the run: V and M of a chunk
    take several MB (20 MB for conv2 at 227 px), which, allocated per chunk, came back from the
    system as fresh pages to be zeroed on first touch every time."""
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    groups, E, Kg, Cg = u.shape[0], u.shape[1], u.shape[2], u.shape[3]
    block = 4 if E == 16 else 6
    P, Q = y.shape[2], y.shape[3]
    TP, TQ = (P + 1) // 2, (Q + 1) // 2
    pitch = padded_pitch(nc * TP * TQ)
    for run in prange((chunks + chunks_per_run - 1) // chunks_per_run):
        v_stride = spread_stride(Cg * pitch)
        m_stride = spread_stride(Kg * pitch)
        v = np.empty(E * v_stride, dtype=np.float32)
        m = np.empty(E * m_stride, dtype=np.float32)
        padded = np.empty((2 * TP + block - 2, 2 * TQ + block - 2), dtype=np.float32)
        for chunk in range(run * chunks_per_run, min(chunks, (run + 1) * chunks_per_run)):
            n0 = chunk * nc
            m_images = min(nc, N - n0)
            for g in range(groups):
                _transform_input(v, v_stride, pitch, padded, x, n0, m_images, g * Cg, Cg, pad, TP, TQ, block)
                for e in range(E):
                    gemm_serial(m[e * m_stride :], pitch, u[g, e].reshape(-1), Cg, UNIT_STRIDE,
                                v[e * v_stride :], pitch, UNIT_STRIDE, Kg, pitch, Cg, np.float32(1.0), np.float32(0.0))
                if block == 4:
                    _output_transform(y, m, m_stride, pitch, b, has_bias, n0, m_images, g * Kg, Kg, TP, TQ)
                else:
                    _output_transform5(y, m, m_stride, pitch, b, has_bias, n0, m_images, g * Kg, Kg, TP, TQ)


# ---------------------------------------------------------------------------------------------
# Backward filter: the gradient of the transformed filter G w G^T is sum_t (B^T d B) * (A dY A^T)
# (dY the 2x2 block of dy at tile t), so dw = G^T [ sum_t (A dY A^T) * (B^T d B) ] G, summed over
# the tiles of every image: per position e, a GEMM whose reduction runs over the tiles,
#     S[e] (Kg, Cg) += Z[e] (Kg, T) @ V[e] (Cg, T).T,    Z[e] = (A dY A^T)[e // a, e % a].


@njit(cache=True, nogil=True)
def _a_rows(out, at, stride, y0, y1, block, T):
    """out[at + r*stride + t] = (A y)[r] for the 2-vector y = (y0[t], y1[t]), t < T, r < block:
    A y = (y0, y0 + y1, y0 - y1, -y1) for 4x4 blocks, (y0, y0 + y1, y0 - y1, y0 + 2 y1, y0 - 2 y1, y1)
    for 6x6. Each row is a loop along t over a slice (indices the compiler sees are not negative,
    so it vectorises the loop)."""
    two = np.float32(2.0)
    o0, o1, o2 = out[at : at + T], out[at + stride : at + stride + T], out[at + 2 * stride : at + 2 * stride + T]
    for t in range(T):
        o0[t] = y0[t]
        o1[t] = y0[t] + y1[t]
        o2[t] = y0[t] - y1[t]
    o3 = out[at + 3 * stride : at + 3 * stride + T]
    if block == 4:
        for t in range(T):
            o3[t] = -y1[t]
        return
    o4, o5 = out[at + 4 * stride : at + 4 * stride + T], out[at + 5 * stride : at + 5 * stride + T]
    for t in range(T):
        o3[t] = y0[t] + two * y1[t]
        o4[t] = y0[t] - two * y1[t]
        o5[t] = y1[t]


@njit(cache=True, nogil=True)
def _dy_transform(z, e_stride, pitch, dy, n0, nc, k0, Kg, TP, TQ, block):
    """z[e*e_stride + kk*pitch + t] = (A dY A^T)[e // block, e % block], dY = the 2x2 block of
    dy[n0 + i, k0 + kk] at tile t (0 outside P x Q); 0 for t >= T. Per output channel, the four
    values of every tile's dY are gathered into rows, then A dY and (A dY) A^T are computed along
    the tiles, where z's rows are contiguous (tile by tile, a tile's values lie e_stride apart)."""
    P, Q = dy.shape[2], dy.shape[3]
    T = nc * TP * TQ
    zero = np.float32(0.0)
    corners = np.empty((4, T), dtype=np.float32)  # corners[2a + j, t] = dY[a, j] of tile t
    columns = np.empty(block * 2 * T, dtype=np.float32)  # columns[r*2T + j*T + t] = (A dY)[r, j]
    for kk in range(Kg):
        for i in range(nc):
            plane = dy[n0 + i, k0 + kk]
            for tp in range(TP):
                p0 = 2 * tp
                t0 = (i * TP + tp) * TQ
                for tq in range(TQ):
                    q0 = 2 * tq
                    corners[0, t0 + tq] = plane[p0, q0]
                    corners[1, t0 + tq] = plane[p0, q0 + 1] if q0 + 1 < Q else zero
                    corners[2, t0 + tq] = plane[p0 + 1, q0] if p0 + 1 < P else zero
                    corners[3, t0 + tq] = plane[p0 + 1, q0 + 1] if p0 + 1 < P and q0 + 1 < Q else zero
        for j in range(2):
            _a_rows(columns, j * T, 2 * T, corners[j], corners[2 + j], block, T)
        for r in range(block):
            _a_rows(z, block * r * e_stride + kk * pitch, e_stride, columns[r * 2 * T : r * 2 * T + T],
                    columns[r * 2 * T + T : (r + 1) * 2 * T], block, T)
        _zero_tails(z, e_stride, block * block, kk * pitch + T, (kk + 1) * pitch)


@njit(parallel=True, cache=True, nogil=True)
def _winograd_filter(s_parts, x, dy, pad, nc, chunks, chunks_per_part):
    """s_parts[part, g, e] (Kg, Cg) = that part's sum over its chunks of Z[e] @ V[e].T (group g),
    each part walking its chunks in order."""
    N, C, K = x.shape[0], x.shape[1], dy.shape[1]
    groups, E = s_parts.shape[1], s_parts.shape[2]
    Kg, Cg = s_parts.shape[3], s_parts.shape[4]
    block = 4 if E == 16 else 6
    P, Q = dy.shape[2], dy.shape[3]
    TP, TQ = (P + 1) // 2, (Q + 1) // 2
    pitch = padded_pitch(nc * TP * TQ)
    for part in prange(s_parts.shape[0]):
        v_stride = spread_stride(Cg * pitch)
        z_stride = spread_stride(Kg * pitch)
        v = np.empty(E * v_stride, dtype=np.float32)
        z = np.empty(E * z_stride, dtype=np.float32)
        padded = np.empty((2 * TP + block - 2, 2 * TQ + block - 2), dtype=np.float32)
        first = part * chunks_per_part
        for chunk in range(first, min(chunks, first + chunks_per_part)):
            n0 = chunk * nc
            m_images = min(nc, N - n0)
            beta = np.float32(0.0) if chunk == first else np.float32(1.0)
            for g in range(groups):
                _transform_input(v, v_stride, pitch, padded, x, n0, m_images, g * Cg, Cg, pad, TP, TQ, block)
                _dy_transform(z, z_stride, pitch, dy, n0, m_images, g * Kg, Kg, TP, TQ, block)
                for e in range(E):
                    # S[e] (Kg, Cg) += Z[e] (Kg, T) @ V[e] (Cg, T).T on the packed kernel, V read through
                    # transposed strides: on conv2-5's shapes (256-384 x 96-384 outputs, 128-784 tiles) it ran
                    # 1.2-1.3x faster than the dot-product form.
                    gemm_serial(s_parts[part, g, e].reshape(-1), Cg, z[e * z_stride :], pitch, UNIT_STRIDE,
                                v[e * v_stride :], UNIT_STRIDE, pitch, Kg, Cg, m_images * TP * TQ,
                                np.float32(1.0), beta)


@njit(cache=True, nogil=True, inline="always")
def _g_transpose(s0, s1, s2, s3, s4, s5, block):
    """G^T s: the 3 (4x4 blocks) or 5 (6x6 blocks) filter taps from a transformed column s."""
    half = np.float32(0.5)
    if block == 4:
        return s0 + half * (s1 + s2), half * (s1 - s2), half * (s1 + s2) + s3, np.float32(0.0), np.float32(0.0)
    sixth, twelfth, twentyfourth = np.float32(1.0 / 6.0), np.float32(1.0 / 12.0), np.float32(1.0 / 24.0)
    third, two_thirds = np.float32(1.0 / 3.0), np.float32(2.0 / 3.0)
    return (np.float32(0.25) * s0 - sixth * (s1 + s2) + twentyfourth * (s3 + s4),
            sixth * (s2 - s1) + twelfth * (s3 - s4),
            sixth * (s3 + s4 - s1 - s2),
            sixth * (s2 - s1) + third * (s3 - s4),
            two_thirds * (s3 + s4) - sixth * (s1 + s2) + s5)


@njit(parallel=True, cache=True, nogil=True)
def _filter_gradient(dw, s):
    """dw[g*Kg + kk, c] = G^T S G with S = s[g, :, kk, c] (E = 16 or 36 values), one thread per
    output channel."""
    groups, E, Kg, Cg = s.shape
    block = 4 if E == 16 else 6
    R = block - 1  # F(2x2, R x R) works on blocks of R + 1
    zero = np.float32(0.0)
    for gk in prange(groups * Kg):
        g = gk // Kg
        kk = gk - g * Kg
        half_done = np.empty((5, 6), dtype=np.float32)
        for c in range(Cg):
            # columns first: half_done[:, j] = G^T S[:, j]
            for j in range(block):
                t = _g_transpose(s[g, j, kk, c], s[g, block + j, kk, c], s[g, 2 * block + j, kk, c],
                                 s[g, 3 * block + j, kk, c], s[g, 4 * block + j, kk, c] if block == 6 else zero,
                                 s[g, 5 * block + j, kk, c] if block == 6 else zero, block)
                half_done[0, j], half_done[1, j], half_done[2, j], half_done[3, j], half_done[4, j] = t
            for r in range(R):
                row = _g_transpose(half_done[r, 0], half_done[r, 1], half_done[r, 2], half_done[r, 3],
                                   half_done[r, 4] if block == 6 else zero,
                                   half_done[r, 5] if block == 6 else zero, block)
                dw[gk, c, r, 0], dw[gk, c, r, 1], dw[gk, c, r, 2] = row[0], row[1], row[2]
                if block == 6:
                    dw[gk, c, r, 3], dw[gk, c, r, 4] = row[3], row[4]


def winograd_backward_filter(dw, x, dy, pad, groups):
    """dw of a 3x3 or 5x5 stride-1 convolution with padding pad (db is not computed here)."""
    K, Cg, R = dw.shape[0], dw.shape[1], dw.shape[2]
    N = x.shape[0]
    nc = _images_per_chunk(N, dy.shape[2], dy.shape[3])
    chunks = (N + nc - 1) // nc
    chunks_per_part, parts = split_into_parts(chunks)
    s_parts = np.empty((parts, groups, (R + 1) ** 2, K // groups, Cg), dtype=np.float32)
    _winograd_filter(s_parts, x, dy, pad, nc, chunks, chunks_per_part)
    sum_parts(s_parts[0].reshape(-1), s_parts.reshape(parts, -1))  # into the first partial sum
    _filter_gradient(dw, s_parts[0])


def winograd_forward(y, x, w, b, pad, groups):
    """y = conv(x, w) + b for a 3x3 or 5x5 filter, stride 1, zero padding pad."""
    K, Cg, R = w.shape[0], w.shape[1], w.shape[2]
    u = np.empty((groups, (R + 1) ** 2, K // groups, Cg), dtype=np.float32)
    (filter_transform if R == 3 else filter_transform5)(u, w, False)
    _run(y, x, u, b, True, pad)


def winograd_backward_data(dx, w, dy, pad, groups):
    """dx of a 3x3 or 5x5 stride-1 convolution with padding pad: the convolution of dy with the
    filters turned by 180 degrees, their input and output channels swapped (per group), padding
    R - 1 - pad."""
    K, Cg, R = w.shape[0], w.shape[1], w.shape[2]
    u = np.empty((groups, (R + 1) ** 2, Cg, K // groups), dtype=np.float32)
    (filter_transform if R == 3 else filter_transform5)(u, w, True)
    _run(dx, dy, u, np.zeros(1, dtype=np.float32), False, R - 1 - pad)


def _run(y, x, u, b, has_bias, pad):
    N = x.shape[0]
    nc = _images_per_chunk(N, y.shape[2], y.shape[3])
    chunks = (N + nc - 1) // nc
    chunks_per_run, _ = split_into_parts(chunks)
    _winograd(y, x, u, b, has_bias, pad, nc, chunks, chunks_per_run)


def _images_per_chunk(N, P, Q):
    """About CHUNK_TILES tiles per chunk, but at least MIN_CHUNKS chunks when there are images enough."""
    tiles = ((P + 1) // 2) * ((Q + 1) // 2)
    return max(1, min(-(-N // MIN_CHUNKS), round(CHUNK_TILES / tiles)))
