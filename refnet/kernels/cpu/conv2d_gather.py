"""2-D convolution for filters with few taps (AlexNet's conv1: 3 channels, 11x11, stride 4): the
GEMM's gathered operand read straight from x, no im2col matrix. Forward and weight gradient.

Same formulas as conv2d.py (cross-correlation, zero padding, groups; Kg = K / groups, Cg = C / groups):
    forward:         y[n, g*Kg + k, p, q] = b[g*Kg + k] + sum_t w[g*Kg + k, t] * xp[n, g, t, p, q]
    backward filter: dw[g*Kg + k, t]      = sum_{n, p, q} dy[n, g*Kg + k, p, q] * xp[n, g, t, p, q]
with t = (c*R + r)*S + s the filter's taps, T = Cg*R*S of them, and
    xp[n, g, t, p, q] = x_padded[n, g*Cg + c, p*stride + r, q*stride + s]
                      = x_flat[image(n, g) + tap(t) + pixel(p, q)]
    image(n, g) = (n*C + g*Cg)*Hp*Wp,  tap(t) = (c*Hp + r)*Wp + s,  pixel(p, q) = (p*Wp + q)*stride
on x padded with zeros to Hp = H + 2*pad, Wp = W + 2*pad (x itself when pad == 0: conv1 reads x in
place). Both products are then one kernel with the roles of taps and pixels swapped:
    out[i, j] = sum_m x_flat[row[i] + col[m]] * panel[m, j]                 a 6 x 16 tile of out
    forward:          i = output pixel (row = image + pixel), m = tap (col = tap offsets),
                      j = 16 output channels, panel = w as (group, channel block, T, 16)
    backward filter:  i = tap (row = image + tap), m = output pixel (col = pixel offsets),
                      j = 16 output channels, panel = dy of a band of output rows as (channel block, pixels, 16)
The tile keeps its 6 x 16 sums in 12 AVX2 registers over the whole reduction; per step one vector
load of the panel and six broadcasts of x feed twelve FMAs, as in the GEMM's micro-kernel, but the
broadcasts come from x (each value of which im2col would copy about (R/stride)*(S/stride) times:
7.6 for conv1) and the panel is 16 output channels (w: T*64 bytes, 23 KB for conv1, stays in L1d
while the band's pixels pass).
Work: the forward shares out (image, band of output rows) tasks, each writing its own outputs; the
weight gradient sums bands in PARTS fixed runs, each in order, then adds the parts in order
(partial_sums.py), so both give the same bits whatever the thread count. The data gradient (not
needed for a first layer) stays with im2col (conv2d.py).
"""

import numpy as np
from numba import njit, prange

from .partial_sums import split_into_parts, sum_parts
from .simd import LANES, vadd, vbroadcast, vfma, vload, vstore, vtranspose16, vzero

# Rows of the register tile: 6 x 16 lanes is 12 of AVX2's 16 vector registers (AVX-512 runs the
# same tile, in 6 of its 32).
TILE_ROWS = 6
# Output pixels per band, the unit of work: a band's dy panel for one channel block (BAND_PIXELS *
# 64 bytes, 32 KB) is read by every tap tile of the weight gradient. The forward measured 80-91
# GFLOP/s a core on conv1 from bands of 2 output rows up, the most on the longest bands
# (bench/results/cpu-amd-epyc-zen3.md), so the 67-px maps go one image to a band.
BAND_PIXELS = 512


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _gather_tile(x, rows, i0, base, cols, m_count, panel, at):
    """The 6 x 16 tile sum_{m < m_count} x[base + rows[i0 + i] + cols[m]] * panel[at + m*16 + j],
    as 6 vectors (row i), in registers over the whole sum."""
    r0, r1, r2 = base + rows[i0], base + rows[i0 + 1], base + rows[i0 + 2]
    r3, r4, r5 = base + rows[i0 + 3], base + rows[i0 + 4], base + rows[i0 + 5]
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    for m in range(m_count):
        o = cols[m]
        y = vload(panel, at + m * LANES)
        c0 = vfma(vbroadcast(x, r0 + o), y, c0)
        c1 = vfma(vbroadcast(x, r1 + o), y, c1)
        c2 = vfma(vbroadcast(x, r2 + o), y, c2)
        c3 = vfma(vbroadcast(x, r3 + o), y, c3)
        c4 = vfma(vbroadcast(x, r4 + o), y, c4)
        c5 = vfma(vbroadcast(x, r5 + o), y, c5)
    return c0, c1, c2, c3, c4, c5


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _put(out, at, v, add):
    if add:
        vstore(out, at, vadd(vload(out, at), v))
    else:
        vstore(out, at, v)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _store_tile(out, at, t, add, v):
    """The tile's 6 rows plus v at out[at + i*16 : at + (i + 1)*16], written, or added to what is there."""
    _put(out, at, vadd(t[0], v), add)
    _put(out, at + LANES, vadd(t[1], v), add)
    _put(out, at + 2 * LANES, vadd(t[2], v), add)
    _put(out, at + 3 * LANES, vadd(t[3], v), add)
    _put(out, at + 4 * LANES, vadd(t[4], v), add)
    _put(out, at + 5 * LANES, vadd(t[5], v), add)


@njit(cache=True, nogil=True)
def _band_pixels(pixels, p0, rows, Q, Wp, stride):
    """pixels[l] = pixel(p0 + l // Q, l % Q) for the band's rows*Q outputs, then the last one again
    up to a whole number of tiles (the tail tile's extra rows read valid x and are not stored)."""
    L = rows * Q
    for l in range(L):
        pixels[l] = ((p0 + l // Q) * Wp + l % Q) * stride
    for l in range(L, pixels.size):
        pixels[l] = pixels[L - 1]


def tap_offsets(Cg, R, S, Hp, Wp):
    """tap(t) for t < T, then the last tap again up to a whole number of tiles (int64)."""
    t = np.arange(Cg * R * S, dtype=np.int64)
    taps = (t // (R * S) * Hp + t // S % R) * Wp + t % S
    return np.concatenate([taps, np.full(-taps.size % TILE_ROWS, taps[-1], np.int64)])


def channel_blocks(Kg):
    """16-lane blocks of output channels per group (the last one zero-padded)."""
    return (Kg + LANES - 1) // LANES


@njit(cache=True, nogil=True)
def _padded(xp, x, pad):
    """xp (N, C, H + 2*pad, W + 2*pad) = x with a border of pad zeros."""
    N, C, H, W = x.shape
    for n in range(N):
        for c in range(C):
            plane = xp[n, c]
            plane[:, :] = np.float32(0.0)
            for h in range(H):
                plane[pad + h, pad : pad + W] = x[n, c, h]


def padded_input(x, pad):
    """x flattened, with a border of pad zeros (x itself when pad == 0), and its (Hp, Wp)."""
    N, C, H, W = x.shape
    if pad == 0:
        return x.reshape(-1), H, W
    xp = np.empty((N, C, H + 2 * pad, W + 2 * pad), np.float32)
    _padded(xp, x, pad)
    return xp.reshape(-1), H + 2 * pad, W + 2 * pad


@njit(cache=True, nogil=True)
def _weight_panels(panels, w, groups):
    """panels[((g*blocks + kb)*T + t)*16 + j] = w[g*Kg + kb*16 + j, t] (0 past Kg)."""
    K, T = w.shape
    Kg = K // groups
    blocks = (Kg + LANES - 1) // LANES
    for g in range(groups):
        for kb in range(blocks):
            for t in range(T):
                out = panels[((g * blocks + kb) * T + t) * LANES : ((g * blocks + kb) * T + t + 1) * LANES]
                for j in range(LANES):
                    k = kb * LANES + j
                    out[j] = w[g * Kg + k, t] if k < Kg else np.float32(0.0)


@njit(parallel=True, cache=True, nogil=True)
def _forward(y, x, panels, biases, taps, T, C, Hp, Wp, stride, groups, band_rows):
    """One task per (image, band of output rows): every channel block of every group, each tile of
    6 pixels summed over all T taps plus the bias, then written into y, 16 x 16 blocks transposed
    in registers."""
    N, K, P, Q = y.shape
    y_flat = y.reshape(-1)
    Kg, Cg = K // groups, C // groups
    blocks = (Kg + LANES - 1) // LANES
    bands = (P + band_rows - 1) // band_rows
    tile_pixels = (band_rows * Q + TILE_ROWS - 1) // TILE_ROWS * TILE_ROWS
    for task in prange(N * bands):
        n, band = task // bands, task % bands
        p0 = band * band_rows
        L = min(band_rows, P - p0) * Q
        pixels = np.empty((L + TILE_ROWS - 1) // TILE_ROWS * TILE_ROWS, np.int64)
        _band_pixels(pixels, p0, L // Q, Q, Wp, stride)
        sums = np.empty(tile_pixels * LANES, np.float32)
        for g in range(groups):
            image = (n * C + g * Cg) * Hp * Wp
            for kb in range(blocks):
                at = (g * blocks + kb) * T * LANES
                bias = vload(biases, (g * blocks + kb) * LANES)
                for i0 in range(0, L, TILE_ROWS):
                    t = _gather_tile(x, pixels, i0, image, taps, T, panels, at)
                    _store_tile(sums, i0 * LANES, t, False, bias)
                k0 = g * Kg + kb * LANES
                channels = min(LANES, Kg - kb * LANES)
                whole = L // LANES * LANES if channels == LANES else 0
                for l0 in range(0, whole, LANES):
                    vtranspose16(sums, l0 * LANES, LANES, y_flat, (n * K + k0) * P * Q + p0 * Q + l0, P * Q)
                for j in range(channels):
                    out = y[n, k0 + j].reshape(-1)[p0 * Q : p0 * Q + L]
                    for l in range(whole, L):
                        out[l] = sums[l * LANES + j]


@njit(cache=True, nogil=True)
def _dy_panels(panels, dy, n, k0, Kg, l0, L):
    """panels[(kb*L + l)*16 + j] = dy[n, k0 + kb*16 + j, l0 + l] for the band's L pixels (0 past
    Kg): 16 x 16 blocks transposed in registers, the rest value by value."""
    blocks = (Kg + LANES - 1) // LANES
    plane = dy.shape[2] * dy.shape[3]
    flat = dy.reshape(-1)
    for kb in range(blocks):
        row = (n * dy.shape[1] + k0 + kb * LANES) * plane + l0
        whole = L // LANES * LANES if Kg - kb * LANES >= LANES else 0
        for l in range(0, whole, LANES):
            vtranspose16(flat, row + l, plane, panels, (kb * L + l) * LANES, LANES)
        for j in range(LANES):
            inside = kb * LANES + j < Kg
            for l in range(whole, L):
                panels[(kb * L + l) * LANES + j] = flat[row + j * plane + l] if inside else np.float32(0.0)


@njit(parallel=True, cache=True, nogil=True)
def _filter_gradient(sums, x, dy, taps, T, C, Hp, Wp, stride, groups, band_rows, bands_per_part):
    """sums[part] = the part's share of dw as (group, channel block, tap, 16), over its run of
    (image, band) chunks in order; each chunk's tile sums are added to what the part holds."""
    N, K, P, Q = dy.shape
    Kg, Cg = K // groups, C // groups
    blocks = (Kg + LANES - 1) // LANES
    bands = (P + band_rows - 1) // band_rows
    T_tiles = taps.size
    for part in prange(sums.shape[0]):
        held = sums[part]
        pixels = np.empty(band_rows * Q, np.int64)
        panels = np.empty(blocks * band_rows * Q * LANES, np.float32)
        first = part * bands_per_part
        for chunk in range(first, min(N * bands, first + bands_per_part)):
            n, band = chunk // bands, chunk % bands
            p0 = band * band_rows
            L = min(band_rows, P - p0) * Q
            _band_pixels(pixels, p0, L // Q, Q, Wp, stride)
            for g in range(groups):
                image = (n * C + g * Cg) * Hp * Wp
                _dy_panels(panels, dy, n, g * Kg, Kg, p0 * Q, L)
                for kb in range(blocks):
                    for i0 in range(0, T_tiles, TILE_ROWS):
                        t = _gather_tile(x, taps, i0, image, pixels, L, panels, kb * L * LANES)
                        _store_tile(held, ((g * blocks + kb) * T_tiles + i0) * LANES, t, chunk != first, vzero())


@njit(cache=True, nogil=True)
def _filter_from_panels(dw, sums, T_tiles, groups):
    """dw[g*Kg + kb*16 + j, t] = sums[((g*blocks + kb)*T_tiles + t)*16 + j] for t < T."""
    K, T = dw.shape
    Kg = K // groups
    blocks = (Kg + LANES - 1) // LANES
    for k in range(K):
        g, kk = k // Kg, k % Kg
        for t in range(T):
            dw[k, t] = sums[((g * blocks + kk // LANES) * T_tiles + t) * LANES + kk % LANES]


def band_rows_for(Q):
    """Output rows per band: about BAND_PIXELS pixels, at least one row."""
    return max(1, BAND_PIXELS // Q)


def gather_forward(y, x, w, b, stride, pad, groups):
    """conv2d_forward by tiles of output pixels x 16 channels, x read in place (see the module doc)."""
    K, Cg, R, S = w.shape
    T = Cg * R * S
    flat, Hp, Wp = padded_input(x, pad)
    panels = np.empty(groups * channel_blocks(K // groups) * T * LANES, np.float32)
    _weight_panels(panels, w.reshape(K, T), groups)
    biases = np.empty(groups * channel_blocks(K // groups) * LANES, np.float32)
    _weight_panels(biases, b.reshape(K, 1), groups)
    taps = tap_offsets(Cg, R, S, Hp, Wp)
    _forward(y, flat, panels, biases, taps, T, x.shape[1], Hp, Wp, stride, groups, band_rows_for(y.shape[3]))


def gather_backward_filter(dw, x, dy, stride, pad, groups):
    """dw of the convolution by tiles of 6 taps x 16 channels over bands of output pixels, summed
    in the fixed parts of partial_sums.py."""
    N, C = x.shape[0], x.shape[1]
    K, Cg, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    flat, Hp, Wp = padded_input(x, pad)
    taps = tap_offsets(Cg, R, S, Hp, Wp)
    band_rows = band_rows_for(Q)
    per_part, parts = split_into_parts(N * ((P + band_rows - 1) // band_rows))
    sums = np.empty((parts, groups * channel_blocks(K // groups) * taps.size * LANES), np.float32)
    _filter_gradient(sums, flat, dy, taps, Cg * R * S, C, Hp, Wp, stride, groups, band_rows, per_part)
    sum_parts(sums[0], sums)
    _filter_from_panels(dw.reshape(K, -1), sums[0], taps.size, groups)
