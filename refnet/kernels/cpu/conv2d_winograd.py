"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) on the CPU (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015): AlexNet's conv3, conv4 and conv5, and
the backward-data pass of each (a 3x3 stride-1 convolution of dy with the flipped filters).

    y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * x[n, g*Cg + c, p - pad + r, q - pad + s]
    (the formula of conv2d.py with stride 1, R = S = 3; x is 0 outside the image)

Each 2x2 block of outputs (a tile; tile t = (i, tp, tq) covers y[n0 + i, :, 2tp : 2tp+2, 2tq : 2tq+2])
is computed from the 4x4 block d of input under it as
    Y = A^T [ sum_c U[k, c] * V[c, t] ] A,   U = G w[k, c] G^T (4x4),   V = B^T d B (4x4),
    B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
    A^T = [1 1 1 0; 0 1 -1 -1]
(elementwise product inside the sum). For each of the 16 positions e of the 4x4 transforms the sum
over c is a GEMM: M[e] (Kg, T) = U[e] (Kg, Cg) @ V[e] (Cg, T), 16 GEMMs with 2.25x fewer
multiply-adds in all than the direct convolution (1.9x on 13x13 outputs, whose 7x7 tiles cover
14x14). The transforms add, subtract and halve: the result differs from the direct sum only by
float32 rounding.

Layouts (float32): x (N, C, H, W), w (K, Cg, 3, 3), b (K,), y (N, K, P, Q) as in conv2d.py;
U (groups, 16, Kg, Cg); per chunk of nc images, V (16 blocks of (Cg, pitch)) and M (16 blocks of
(Kg, pitch)), the blocks spread_stride() apart, with
T = nc*TP*TQ tiles (TP = ceil(P/2), TQ = ceil(Q/2)), tile index t = (i*TP + tp)*TQ + tq, and pitch
= padded_pitch(T) (zeros past T). The GEMMs are gemm_rows_serial (rows of V along the tiles).
Parallelism is over chunks of images, each on one thread: every output belongs to one chunk, so
results are bit-identical run to run whatever the thread count.
"""

import numpy as np
from numba import njit, prange

from .gemm import gemm_rows_serial, padded_pitch

# Tiles per chunk of images: enough columns for the GEMMs to run at speed (rows of about 200
# floats), few enough that V and M of a chunk stay near the L2 cache.
CHUNK_TILES = 392


@njit(cache=True, nogil=True)
def spread_stride(length):
    """The distance between the 16 blocks of V or M: at least `length`, a whole number of cache
    lines, and an odd number of them, so that the 16 values of one tile (one per block), written or
    read together, fall on 16 different L1 sets. (With blocks a multiple of 4 KiB apart, as
    AlexNet's shapes give, they all share one set: the input transform ran 4x slower.)"""
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
def _input_transform(v, e_stride, pitch, padded, x, n0, nc, c0, Cg, pad, TP, TQ):
    """v[e*e_stride + c*pitch + t] = (B^T d B)[e // 4, e % 4], d = the 4x4 input block of tile t in
    channel c0 + c (rows 2tp - pad .., columns 2tq - pad .., 0 outside the image); 0 for t >= T.
    `padded` is scratch for one plane with its zero border, (2*TP + 2, 2*TQ + 2): every block
    is then read without a bounds check."""
    H, W = x.shape[2], x.shape[3]
    T = nc * TP * TQ
    PH, PW = padded.shape
    for h in range(PH):
        for col in range(PW):
            padded[h, col] = np.float32(0.0)
    for c in range(Cg):
        for i in range(nc):
            plane = x[n0 + i, c0 + c]
            # The image lands at (pad, pad); rows and columns it does not reach stay 0.
            for h in range(max(0, -pad), min(H, PH - pad)):
                src = plane[h]
                dst = padded[h + pad]
                for col in range(max(0, -pad), min(W, PW - pad)):
                    dst[col + pad] = src[col]
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
        for e in range(16):
            row = v[e * e_stride + c * pitch : e * e_stride + (c + 1) * pitch]
            for t in range(T, pitch):
                row[t] = np.float32(0.0)


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


@njit(parallel=True, cache=True, nogil=True)
def _winograd(y, x, u, b, has_bias, pad, nc, chunks):
    N, C, K = x.shape[0], x.shape[1], y.shape[1]
    groups, Kg, Cg = u.shape[0], u.shape[2], u.shape[3]
    P, Q = y.shape[2], y.shape[3]
    TP, TQ = (P + 1) // 2, (Q + 1) // 2
    pitch = padded_pitch(nc * TP * TQ)
    for task in prange(chunks):
        n0 = task * nc
        m_images = min(nc, N - n0)
        v_stride = spread_stride(Cg * pitch)
        m_stride = spread_stride(Kg * pitch)
        v = np.empty(16 * v_stride, dtype=np.float32)
        m = np.empty(16 * m_stride, dtype=np.float32)
        padded = np.empty((2 * TP + 2, 2 * TQ + 2), dtype=np.float32)
        for g in range(groups):
            _input_transform(v, v_stride, pitch, padded, x, n0, m_images, g * Cg, Cg, pad, TP, TQ)
            for e in range(16):
                gemm_rows_serial(m[e * m_stride :], pitch, u[g, e].reshape(-1), Cg, 1,
                                 v[e * v_stride :], pitch, Kg, pitch, Cg, np.float32(1.0), np.float32(0.0))
            _output_transform(y, m, m_stride, pitch, b, has_bias, n0, m_images, g * Kg, Kg, TP, TQ)


def conv3x3_forward(y, x, w, b, pad, groups):
    """y = conv(x, w) + b for a 3x3 filter, stride 1, zero padding pad."""
    K, Cg = w.shape[0], w.shape[1]
    u = np.empty((groups, 16, K // groups, Cg), dtype=np.float32)
    filter_transform(u, w, False)
    _run(y, x, u, b, True, pad)


def conv3x3_backward_data(dx, w, dy, pad, groups):
    """dx of a 3x3 stride-1 convolution with padding pad: the convolution of dy with the filters
    flipped in both directions, their input and output channels swapped (per group), padding 2 - pad."""
    K, Cg = w.shape[0], w.shape[1]
    u = np.empty((groups, 16, Cg, K // groups), dtype=np.float32)
    filter_transform(u, w, True)
    _run(dx, dy, u, np.zeros(1, dtype=np.float32), False, 2 - pad)


def _run(y, x, u, b, has_bias, pad):
    N = x.shape[0]
    tiles = ((y.shape[2] + 1) // 2) * ((y.shape[3] + 1) // 2)
    nc = max(1, min(N, round(CHUNK_TILES / tiles)))
    _winograd(y, x, u, b, has_bias, pad, nc, (N + nc - 1) // nc)
