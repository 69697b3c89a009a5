"""GEMM on the CPU:  c = alpha * op(a) @ op(b) + beta * c   (c is not read when beta == 0).

    op(a) = a (M, K), or a.T with a stored (K, M) when trans_a
    op(b) = b (K, N), or b.T with b stored (N, K) when trans_b
    c     (M, N)
All float32, C-contiguous (row-major).

Two kernels with the same contract:
- `gemm_naive`: one dot product per element of c, a plain loop over K. The reference.
- the packed GEMM, `gemm_strided` (used by `gemm` and `linear`; blocks of c shared out over the
  threads) and `gemm_serial` (the same on the calling thread, for conv2d and Winograd, which share
  out whole images instead). One algorithm for all four layouts, in the BLIS style:
  * op(a) is copied, up front, into panels of MR rows running along K (MR values per K index),
    one per slice of KC K indices; op(b) is copied, one K slice of a block of c at a time, into
    panels of NR columns (NR values per K index). Packing is where the layouts differ (op(b)'s
    rows, when they are runs of b, are copied as vectors; its columns, when they are, 16 x 16 at a
    time transposed in registers: done value by value, the copy had cost about 30% of the FC
    GEMMs' time); past it, every case reads the same contiguous panels. Panels are padded with
    zeros to whole tiles.
  * The micro-kernel holds an MR x NR tile of c in vector registers (`simd.py`) for a whole K
    slice: 8 x 32 (16 registers) with AVX-512's 32 registers, 4 x 16 (8 of AVX2's 16) otherwise;
    per K index, NR/16 vector loads of b and MR broadcasts of a feed the FMAs. c is loaded and
    stored once per K slice, never inside the K loop. MR, NR, KC, MB, NB come from `machine.py`.
  * A block of MB x NB of c walks K slice by slice; its op(b) slice (KC x NB) is packed into L2,
    and each NR-column panel of it stays in L1 while every MR-row panel of op(a) passes; where
    op(b)'s rows are runs of b, each tile first asks the caches for a few rows of the next slice.
    When K is one slice (the FC weight gradients: K = the batch) op(b) is small and packed once,
    up front, for all the blocks, and each tile of c is stored once, to memory, after only K
    steps: the block then goes row group by row group instead, each MR-row panel of op(a) in L1
    while the NR-column panels pass, so that c is written along its rows (sequential streams the
    hardware prefetcher follows, where going down a column of tiles each store missed on its own:
    bench/results/cpu-amd-epyc-zen3.md, "FC weight gradient").
  Each element of c belongs to one block, so one thread writes it, always summing in the same
  order (K slices in turn, K indices in turn within a slice): results are bit-identical run to run
  and do not depend on the number of threads.

- `gemm_rows_a`, the packed GEMM's micro-kernel with op(a) = a read in place, MR rows at a time
  (broadcasts from each row in turn along K), and op(b) packed whole up front: for a large
  row-major operand that is used once per small other one, the FC forward as y^T = W x^T (and
  `gemm`'s NT case as c^T = b a^T). Copying W into panels, as `gemm_strided` would for y = x W^T,
  is a pass over memory that the FMAs wait for; read in place, W streams in while they run.

- `gemm_nt_serial`, the dot-product form, for conv2d's NT products on the calling thread (the
  forward over im2col patches and the weight gradients of long chunks): each element of c is a
  dot product of two rows read in place along K, a 4x4 tile of them at a time (LLVM vectorises
  the loop over K). Those products have a long K and a short c, where the packed kernel gains
  nothing over it (measured, see gemm_nt_serial).

The flat views: the fast kernels take 1-D arrays and the row pitch or the strides of each matrix
(`lda`, `sa_i`, ...), so callers can hand them a slice of a larger buffer without copying.

History (bench/results/cpu.md): before the vector type of `simd.py`, written with scalars, Numba
would not keep a tile of c in registers across the K loop; the two forms used then (4x4 dot
products, row updates of c in L1) reached 0.72-0.98x numpy matmul on the FC shapes.
"""

import numpy as np
from numba import njit, prange

from .machine import BLOCKING
from .simd import (LANES, prefetch, vbroadcast, vfirst, vfma, vload, vload_masked, vmul, vsplat, vstore, vtranspose16,
                   vzero)

# Micro tile of c in registers, K slice, block of c per parallel task: chosen for this CPU.
MR = BLOCKING["MR"]
NR = BLOCKING["NR"]
KC = BLOCKING["KC"]
MB = BLOCKING["MB"]
NB = BLOCKING["NB"]
NR_VECTORS = NR // LANES
# Blocks of c wanted per parallel GEMM, at least.
MIN_TASKS = 8
# The dot-product form: a 4x4 tile of dot products (16 accumulators + 8 operand vectors fit the
# 32 vector registers of AVX-512; on AVX2's 16 they spill, yet 4x4 measured faster there than 3x4
# and 2x4: bench/results/cpu-amd-epyc-zen3.md), macro tiles of c per call, the longest K slice.
DOT_MR = 4
DOT_NR = 4
DOT_MB = 128
DOT_NB = 256
DOT_KC = 512
# Unit strides passed as np.int64, not as a literal 1: Numba compiles a callee once per argument
# type, and a literal is a type of its own, so literal 1s in different places made three copies of
# gemm_serial and its packing helpers (bench/results/demo.md: about 9 s of compiling saved; the
# GEMMs' speed measured the same).
UNIT_STRIDE = np.int64(1)
# False as a numpy bool for the same reason: a literal False made a second copy of _packed_block.
NOT_PACKED = np.bool_(False)


@njit(cache=True, nogil=True)
def _gemm_naive(c, a, b, trans_a, trans_b, alpha, beta):
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    for i in range(M):
        for j in range(N):
            total = np.float32(0.0)
            for p in range(K):
                a_ip = a[p, i] if trans_a else a[i, p]
                b_pj = b[j, p] if trans_b else b[p, j]
                total += a_ip * b_pj
            if beta == np.float32(0.0):
                c[i, j] = alpha * total
            else:
                c[i, j] = alpha * total + beta * c[i, j]


def gemm_naive(c, a, b, trans_a, trans_b, alpha, beta):
    """Same contract as `gemm`; the obviously-correct triple loop."""
    _gemm_naive(c, a, b, bool(trans_a), bool(trans_b), np.float32(alpha), np.float32(beta))


@njit(cache=True, nogil=True)
def padded_pitch(length):
    """Row pitch for a scratch matrix (conv2d's columns): a whole number of cache lines, but not a
    multiple of 4 KiB (rows a multiple of 4 KiB apart share L1 sets and evict each other)."""
    pitch = (length + 15) // 16 * 16
    return pitch + 16 if pitch % 1024 == 0 else pitch


@njit(cache=True, nogil=True)
def _pack_a_panel(ap, a0, a, sa_i, sa_p, i0, rows, p0, kc):
    """ap[a0 + p*MR + i] = op(a)[i0 + i, p0 + p] for p < kc, i < MR; rows past `rows` are zeros."""
    if rows == MR and sa_i == 1:
        # Each K index's MR values are a run of a (op(a) = a stored transposed): copied as one
        # vector move (the loop with its bounds known at compile time).
        for p in range(kc):
            out = ap[a0 + p * MR : a0 + p * MR + MR]
            src = a[(p0 + p) * sa_p + i0 : (p0 + p) * sa_p + i0 + MR]
            for i in range(MR):
                out[i] = src[i]
        return
    for p in range(kc):
        out = ap[a0 + p * MR : a0 + p * MR + MR]
        src = (p0 + p) * sa_p + i0 * sa_i
        for i in range(rows):
            out[i] = a[src + i * sa_i]
        for i in range(rows, MR):
            out[i] = np.float32(0.0)


@njit(cache=True, nogil=True, inline="always")
def _pack_a_panel_number(ap, a, sa_i, sa_p, M, K, t):
    """Panel t of all of op(a): one panel per K slice s and group g of MR rows, the panel of (s, g)
    at (s*groups + g) * KC*MR."""
    groups = (M + MR - 1) // MR
    s, g = t // groups, t % groups
    _pack_a_panel(ap, t * KC * MR, a, sa_i, sa_p, g * MR, min(MR, M - g * MR), s * KC, min(KC, K - s * KC))


@njit(cache=True, nogil=True)
def _a_panels(M, K):
    return ((K + KC - 1) // KC) * ((M + MR - 1) // MR)


@njit(parallel=True, cache=True, nogil=True)
def _pack_a(ap, a, sa_i, sa_p, M, K):
    for t in prange(_a_panels(M, K)):
        _pack_a_panel_number(ap, a, sa_i, sa_p, M, K, t)


@njit(cache=True, nogil=True)
def _pack_b(bp, b, sb_p, sb_j, p0, kc, j0, nc):
    """bp[h*KC*NR + p*NR + j] = op(b)[p0 + p, j0 + h*NR + j] for p < kc, every panel h of NR
    columns of the nc; columns past nc are zeros. op(b)[p, j] = b[p*sb_p + j*sb_j].
    When sb_j == 1 (b stored along N) each row of b is copied in one pass; otherwise each row of b
    is a column of op(b)."""
    panels = (nc + NR - 1) // NR
    if sb_j == 1:
        # Each row of op(b) is a run of b: NR / 16 vectors per panel (masked on the last, whose
        # lanes past nc load as the zeros the panel needs).
        for p in range(kc):
            src = (p0 + p) * sb_p + j0
            for h in range(panels):
                at = h * KC * NR + p * NR
                cols = nc - h * NR
                for v in range(NR_VECTORS):
                    o = v * LANES
                    if cols >= o + LANES:
                        vstore(bp, at + o, vload(b, src + h * NR + o))
                    else:
                        vstore(bp, at + o, vload_masked(b, src + h * NR + o, vfirst(cols - o)))
    else:
        # Each column of op(b) is a row of b. Where it is a run (sb_p == 1), whole blocks of 16
        # columns x 16 K indices are transposed in registers; the rest value by value.
        whole_k = kc // LANES * LANES if sb_p == 1 else 0
        for h in range(panels):
            out = bp[h * KC * NR : h * KC * NR + kc * NR]
            cols = min(NR, nc - h * NR)
            for j in range(cols):
                start = (j0 + h * NR + j) * sb_j + p0 * sb_p
                first_p = whole_k if j < cols // LANES * LANES else 0
                for p in range(first_p, kc):
                    out[p * NR + j] = b[start + p * sb_p]
            for j in range(cols, NR):
                for p in range(kc):
                    out[p * NR + j] = np.float32(0.0)
            for jj in range(0, cols // LANES * LANES, LANES):
                for pp in range(0, whole_k, LANES):
                    vtranspose16(b, (j0 + h * NR + jj) * sb_j + p0 + pp, sb_j, bp, h * KC * NR + pp * NR + jj, NR)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _update_row(ap, at, y0, y1, lo, hi):
    """One row of the micro tile after one K index: (lo, hi) + ap[at] * (y0, y1)."""
    x = vbroadcast(ap, at)
    return vfma(x, y0, lo), vfma(x, y1, hi)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _micro_8x32(ap, a0, bp, b0, kc):
    """The 8 x 32 tile sum_{p < kc} ap[a0 + p*8 + i] * bp[b0 + p*32 + j] as 16 vectors (row i: the
    pair 2i, 2i+1), held in registers over the whole loop: per K index two vector loads of b and
    eight broadcasts of a feed sixteen FMAs."""
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = vzero()
    c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = vzero()
    for p in range(kc):
        y0 = vload(bp, b0 + p * NR)
        y1 = vload(bp, b0 + p * NR + LANES)
        r = a0 + p * MR
        c00, c01 = _update_row(ap, r, y0, y1, c00, c01)
        c10, c11 = _update_row(ap, r + 1, y0, y1, c10, c11)
        c20, c21 = _update_row(ap, r + 2, y0, y1, c20, c21)
        c30, c31 = _update_row(ap, r + 3, y0, y1, c30, c31)
        c40, c41 = _update_row(ap, r + 4, y0, y1, c40, c41)
        c50, c51 = _update_row(ap, r + 5, y0, y1, c50, c51)
        c60, c61 = _update_row(ap, r + 6, y0, y1, c60, c61)
        c70, c71 = _update_row(ap, r + 7, y0, y1, c70, c71)
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _put_vector(c, at, v, alpha, beta):
    """c[at : at + 16] = alpha * v + beta * c[at : at + 16] (c not read when beta == 0)."""
    if beta == np.float32(0.0):
        vstore(c, at, vmul(vsplat(alpha), v))
    else:
        vstore(c, at, vfma(vsplat(alpha), v, vmul(vsplat(beta), vload(c, at))))


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _put_row(c, at, lo, hi, alpha, beta):
    """c[at : at + 32] = alpha * (lo, hi) + beta * c[at : at + 32]."""
    _put_vector(c, at, lo, alpha, beta)
    _put_vector(c, at + LANES, hi, alpha, beta)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _tile_to_edge(c, c0, ldc, mr, nr, edge, beta):
    """The part of a tile inside c, from the MR x NR scratch `edge` (a tile cut by c's border)."""
    for i in range(mr):
        c_i = c[c0 + i * ldc : c0 + i * ldc + nr]
        e_i = edge[i * NR : i * NR + nr]
        for j in range(nr):
            c_i[j] = e_i[j] if beta == np.float32(0.0) else e_i[j] + beta * c_i[j]


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _micro_8x32_rows(a, a0, lda, bp, b0, kc):
    """As `_micro_8x32` with op(a) read in place: row i of the tile at a[a0 + i*lda + p]."""
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = vzero()
    c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = vzero()
    for p in range(kc):
        y0 = vload(bp, b0 + p * NR)
        y1 = vload(bp, b0 + p * NR + LANES)
        r = a0 + p
        c00, c01 = _update_row(a, r, y0, y1, c00, c01)
        c10, c11 = _update_row(a, r + lda, y0, y1, c10, c11)
        c20, c21 = _update_row(a, r + 2 * lda, y0, y1, c20, c21)
        c30, c31 = _update_row(a, r + 3 * lda, y0, y1, c30, c31)
        c40, c41 = _update_row(a, r + 4 * lda, y0, y1, c40, c41)
        c50, c51 = _update_row(a, r + 5 * lda, y0, y1, c50, c51)
        c60, c61 = _update_row(a, r + 6 * lda, y0, y1, c60, c61)
        c70, c71 = _update_row(a, r + 7 * lda, y0, y1, c70, c71)
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _put_tile_8x32(c, c0, ldc, mr, nr, t, alpha, beta, edge):
    """c[c0 + i*ldc + j] = alpha * t[i, j] + beta * c[...] for i < mr, j < nr, t an 8 x 32 micro
    tile. A tile cut by the border of c goes through `edge` (8 x 32 scratch) so that no vector
    store leaves c's rows."""
    whole = mr == MR and nr == NR
    dst, at, pitch = (c, c0, ldc) if whole else (edge, 0, NR)
    tile_beta = beta if whole else np.float32(0.0)
    _put_row(dst, at, t[0], t[1], alpha, tile_beta)
    _put_row(dst, at + pitch, t[2], t[3], alpha, tile_beta)
    _put_row(dst, at + 2 * pitch, t[4], t[5], alpha, tile_beta)
    _put_row(dst, at + 3 * pitch, t[6], t[7], alpha, tile_beta)
    _put_row(dst, at + 4 * pitch, t[8], t[9], alpha, tile_beta)
    _put_row(dst, at + 5 * pitch, t[10], t[11], alpha, tile_beta)
    _put_row(dst, at + 6 * pitch, t[12], t[13], alpha, tile_beta)
    _put_row(dst, at + 7 * pitch, t[14], t[15], alpha, tile_beta)
    if not whole:
        _tile_to_edge(c, c0, ldc, mr, nr, edge, beta)


@njit(fastmath=True, cache=True, nogil=True)
def _packed_tile_8x32(c, c0, ldc, mr, nr, ap, a0, bp, b0, kc, alpha, beta, edge):
    """c[c0 + i*ldc + j] = alpha * (one 8 x 32 micro tile of the packed panels) + beta * c[...]
    for i < mr, j < nr."""
    _put_tile_8x32(c, c0, ldc, mr, nr, _micro_8x32(ap, a0, bp, b0, kc), alpha, beta, edge)


@njit(fastmath=True, cache=True, nogil=True)
def _rows_tile_8x32(c, c0, ldc, mr, nr, a, a0, lda, bp, b0, kc, alpha, beta, edge):
    """As `_packed_tile_8x32`, op(a)'s rows read in place (a[a0 + i*lda + p])."""
    _put_tile_8x32(c, c0, ldc, mr, nr, _micro_8x32_rows(a, a0, lda, bp, b0, kc), alpha, beta, edge)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _micro_4x16(ap, a0, bp, b0, kc):
    """The 4 x 16 tile sum_{p < kc} ap[a0 + p*4 + i] * bp[b0 + p*16 + j] as 4 vectors (row i), held
    in registers over the whole loop: 8 of AVX2's 16, with 2 for the load of b and 1 for the
    broadcast of a. (A 6 x 16 tile would take 15, and LLVM's schedule of it spilled one row of c to
    the stack and back on every other K index.)"""
    c0 = c1 = c2 = c3 = vzero()
    for p in range(kc):
        y = vload(bp, b0 + p * NR)
        r = a0 + p * MR
        c0 = vfma(vbroadcast(ap, r), y, c0)
        c1 = vfma(vbroadcast(ap, r + 1), y, c1)
        c2 = vfma(vbroadcast(ap, r + 2), y, c2)
        c3 = vfma(vbroadcast(ap, r + 3), y, c3)
    return c0, c1, c2, c3


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _micro_4x16_rows(a, a0, lda, bp, b0, kc):
    """As `_micro_4x16` with op(a) read in place: row i of the tile at a[a0 + i*lda + p]."""
    c0 = c1 = c2 = c3 = vzero()
    for p in range(kc):
        y = vload(bp, b0 + p * NR)
        c0 = vfma(vbroadcast(a, a0 + p), y, c0)
        c1 = vfma(vbroadcast(a, a0 + lda + p), y, c1)
        c2 = vfma(vbroadcast(a, a0 + 2 * lda + p), y, c2)
        c3 = vfma(vbroadcast(a, a0 + 3 * lda + p), y, c3)
    return c0, c1, c2, c3


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _put_tile_4x16(c, c0, ldc, mr, nr, t, alpha, beta, edge):
    """As `_put_tile_8x32`, for the 4 x 16 tile."""
    whole = mr == MR and nr == NR
    dst, at, pitch = (c, c0, ldc) if whole else (edge, 0, NR)
    tile_beta = beta if whole else np.float32(0.0)
    _put_vector(dst, at, t[0], alpha, tile_beta)
    _put_vector(dst, at + pitch, t[1], alpha, tile_beta)
    _put_vector(dst, at + 2 * pitch, t[2], alpha, tile_beta)
    _put_vector(dst, at + 3 * pitch, t[3], alpha, tile_beta)
    if not whole:
        _tile_to_edge(c, c0, ldc, mr, nr, edge, beta)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _packed_tile_4x16(c, c0, ldc, mr, nr, ap, a0, bp, b0, kc, alpha, beta, edge):
    """As `_packed_tile_8x32`, for the 4 x 16 tile; inlined into the block's loops (a call per tile
    of 4 x 16 cost 5-15% on Zen 3; the 8 x 32 tile, measured on Zen 4 as a call, stays one)."""
    _put_tile_4x16(c, c0, ldc, mr, nr, _micro_4x16(ap, a0, bp, b0, kc), alpha, beta, edge)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows_tile_4x16(c, c0, ldc, mr, nr, a, a0, lda, bp, b0, kc, alpha, beta, edge):
    """As `_packed_tile_4x16`, op(a)'s rows read in place (a[a0 + i*lda + p])."""
    _put_tile_4x16(c, c0, ldc, mr, nr, _micro_4x16_rows(a, a0, lda, bp, b0, kc), alpha, beta, edge)


# Only the tile of this machine's shape is compiled (the callers resolve this global when compiled).
_packed_tile = _packed_tile_8x32 if (MR, NR) == (8, 32) else _packed_tile_4x16
_rows_tile = _rows_tile_8x32 if (MR, NR) == (8, 32) else _rows_tile_4x16


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _block_tile(c, ldc, M, ap, a_slice, bp, g, j0, h, nb, kc, alpha, beta, edge):
    """The tile of row group g, column panel h of a block starting at column j0 (nb wide)."""
    _packed_tile(c, g * MR * ldc + j0 + h * NR, ldc, min(MR, M - g * MR), min(NR, nb - h * NR),
                 ap, a_slice + g * KC * MR, bp, h * KC * NR, kc, alpha, beta, edge)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _prefetch_next_slice_rows(b, sb_p, p_next, kc_next, share, shares, j):
    """Ask for this tile's share of the next K slice's rows of op(b) (rows share*kc_next//shares ..
    (share+1)*kc_next//shares of the kc_next from p_next), the NR columns from j: when b's rows are
    runs of memory, so that the next slice's packing reads them from the caches."""
    for p in range(share * kc_next // shares, (share + 1) * kc_next // shares):
        at = (p_next + p) * sb_p + j
        prefetch(b, at)
        prefetch(b, at + NR - 1)


@njit(fastmath=True, cache=True, nogil=True)
def _packed_block(c, ldc, ap, M, K, b, sb_p, sb_j, i0, mb, j0, nb, alpha, beta, bp, edge, b_packed):
    """Rows i0 .. i0+mb (a whole number of MR groups unless it ends at M), columns j0 .. j0+nb of c,
    the whole K: for each K slice, the slice of op(b) is packed into bp (it stays in L2), then each
    panel of NR columns (in L1) meets every row group's panel of op(a); or, when K is one slice,
    each row group's panel of op(a) (in L1) meets every panel of NR columns, along c's rows.
    b_packed: K is one slice and bp already holds the block's panels (packed once for all blocks)."""
    groups = (M + MR - 1) // MR
    panels = (nb + NR - 1) // NR
    first_group, end_group = i0 // MR, (i0 + mb + MR - 1) // MR
    for s in range((K + KC - 1) // KC):
        p0 = s * KC
        kc = min(KC, K - p0)
        if not b_packed:
            _pack_b(bp, b, sb_p, sb_j, p0, kc, j0, nb)
        # beta applies once, on the first K slice; later slices add to what is there.
        slice_beta = beta if s == 0 else np.float32(1.0)
        a_slice = s * groups * KC * MR
        if kc == K:
            for g in range(first_group, end_group):
                for h in range(panels):
                    _block_tile(c, ldc, M, ap, a_slice, bp, g, j0, h, nb, kc, alpha, slice_beta, edge)
        else:
            # The next slice of op(b), when its rows are runs of b (the FC data gradient's W), is
            # fetched a few rows per tile while this one is multiplied: packed cold, one 512-byte
            # run per row of b, the copy waited on memory (13% of fc7's data gradient).
            kc_next = min(KC, K - p0 - KC) if sb_j == 1 else 0
            for h in range(panels):
                for g in range(first_group, end_group):
                    if kc_next > 0:
                        _prefetch_next_slice_rows(b, sb_p, p0 + KC, kc_next, g - first_group, end_group - first_group,
                                                  j0 + h * NR)
                    _block_tile(c, ldc, M, ap, a_slice, bp, g, j0, h, nb, kc, alpha, slice_beta, edge)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gemm_strided(c, ldc, a, lda, trans_a, b, ldb, trans_b, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p op(a)[i, p] op(b)[p, j] + beta * c[i*ldc + j], 1-D arrays.

    op(a)[i, p] = a[p*lda + i] if trans_a else a[i*lda + p]
    op(b)[p, j] = b[j*ldb + p] if trans_b else b[p*ldb + j]
    op(a) is packed whole, up front; blocks of MB x NB of c are shared out over the threads.
    """
    sa_i, sa_p = (1, lda) if trans_a else (lda, 1)
    sb_p, sb_j = (1, ldb) if trans_b else (ldb, 1)
    ap = np.empty(_a_panels(M, K) * KC * MR, dtype=np.float32)
    _pack_a(ap, a, sa_i, sa_p, M, K)
    m_blocks = (M + MB - 1) // MB
    # Narrower column blocks when there would be fewer than MIN_TASKS (fc8's 1000 outputs make four
    # of NB): the threads then share the work more evenly. Each element's sum is the same either way.
    nb_size = NB
    while m_blocks * ((N + nb_size - 1) // nb_size) < MIN_TASKS and nb_size > 2 * NR:
        nb_size //= 2
    n_blocks = (N + nb_size - 1) // nb_size
    # When K is one slice (the FC weight gradients, K = the batch) op(b) is small: packed once, on
    # this thread, for all the blocks, instead of by each block of each row of blocks (fc7's x was
    # copied 32 times, 64 MB in all).
    b_packed = K <= KC and m_blocks > 1
    bq = np.empty(((N + NR - 1) // NR) * KC * NR if b_packed else 0, dtype=np.float32)
    if b_packed:
        _pack_b(bq, b, sb_p, sb_j, 0, K, 0, N)
    for t in prange(m_blocks * n_blocks):
        i0 = (t // n_blocks) * MB
        j0 = (t % n_blocks) * nb_size
        bp = bq[(j0 // NR) * KC * NR :] if b_packed else np.empty(NB * KC, dtype=np.float32)
        edge = np.empty(MR * NR, dtype=np.float32)
        _packed_block(c, ldc, ap, M, K, b, sb_p, sb_j, i0, min(MB, M - i0), j0, min(nb_size, N - j0), alpha, beta,
                      bp, edge, b_packed)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gemm_rows_a(c, ldc, a, lda, b, sb_p, sb_j, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*lda + p] * op(b)[p, j] + beta * c[i*ldc + j], 1-D arrays,
    op(b)[p, j] = b[p*sb_p + j*sb_j]: op(a) is a, not transposed, read in place (the micro-kernel
    broadcasts from MR of its rows at once); op(b), the small operand, is packed whole up front.

    For products whose large operand is a row-major matrix of K-long rows that `gemm_strided`
    would copy, transposed, into panels: the FC forward as y^T = W x^T (with W as op(b) of
    y = x W^T, that copy read all of W from memory and wrote it again, a third of the time at
    batch 32, bench/results/cpu-amd-epyc-zen3.md). Here W is read once, by the FMAs' operand
    loads, while they run. Blocks of MB rows of c are shared out over the threads; each sums the
    K slices in turn, the same order as `gemm_strided`, so results do not depend on the threads."""
    panels = (N + NR - 1) // NR
    slices = (K + KC - 1) // KC
    slice_size = panels * KC * NR
    bp = np.empty(slices * slice_size, dtype=np.float32)
    # On the calling thread: op(b) is the small operand (a prange here cost seconds of compiling).
    for s in range(slices):
        _pack_b(bp[s * slice_size : (s + 1) * slice_size], b, sb_p, sb_j, s * KC, min(KC, K - s * KC), 0, N)
    # The last group of rows, when M is not a whole number of MR, from a copy padded with zero rows:
    # the micro-kernel reads MR rows.
    whole_groups = M // MR
    tail = np.zeros(MR * K, dtype=np.float32)
    for i in range(M - whole_groups * MR):
        for p in range(K):
            tail[i * K + p] = a[(whole_groups * MR + i) * lda + p]
    groups = (M + MR - 1) // MR
    block_groups = MB // MR
    for t in prange((groups + block_groups - 1) // block_groups):
        edge = np.empty(MR * NR, dtype=np.float32)
        for s in range(slices):
            kc = min(KC, K - s * KC)
            # beta applies once, on the first K slice; later slices add to what is there.
            slice_beta = beta if s == 0 else np.float32(1.0)
            for g in range(t * block_groups, min(groups, (t + 1) * block_groups)):
                rows = min(MR, M - g * MR)
                src, a0, pitch = (a, g * MR * lda + s * KC, lda) if g < whole_groups else (tail, s * KC, K)
                for h in range(panels):
                    _rows_tile(c, g * MR * ldc + h * NR, ldc, rows, min(NR, N - h * NR), src, a0, pitch, bp,
                               s * slice_size + h * KC * NR, kc, alpha, slice_beta, edge)


@njit(fastmath=True, cache=True, nogil=True)
def gemm_serial(c, ldc, a, sa_i, sa_p, b, sb_p, sb_j, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*sa_i + p*sa_p] * b[p*sb_p + j*sb_j] + beta * c[i*ldc + j]: the
    packed GEMM on the calling thread, for callers that share out whole GEMMs over the threads
    (conv2d, per chunk of images) and hand over slices of larger buffers with any strides."""
    ap = np.empty(_a_panels(M, K) * KC * MR, dtype=np.float32)
    for t in range(_a_panels(M, K)):
        _pack_a_panel_number(ap, a, sa_i, sa_p, M, K, t)
    # op(b)'s slice only as wide as c: a full-width scratch is a large allocation per call when c
    # is narrow.
    bp = np.empty((min(N, NB) + NR - 1) // NR * NR * KC, dtype=np.float32)
    edge = np.empty(MR * NR, dtype=np.float32)
    for i0 in range(0, M, MB):
        for j0 in range(0, N, NB):
            _packed_block(c, ldc, ap, M, K, b, sb_p, sb_j, i0, min(MB, M - i0), j0, min(NB, N - j0), alpha, beta,
                          bp, edge, NOT_PACKED)


@njit(fastmath=True, cache=True, nogil=True)
def gemm_serial_prepacked(c, ldc, ap, a_at, a_group, M, K, bq, b_at, b_panel, N, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c with both operands already in the micro-kernel's panels,
    each keeping its K indices in turn: op(a)'s row group g (MR rows) at ap[a_at + g*a_group], MR
    values per K index; op(b)'s column panel h (NR columns) at bq[b_at + h*b_panel], NR values per
    K index, columns past N zeros. For a caller that lays out its operands once and multiplies
    many sub-blocks of them (conv2d_small's three passes). The same sums in the same order as
    `gemm_serial`: K slices of KC in turn."""
    edge = np.empty(MR * NR, dtype=np.float32)
    groups, panels = (M + MR - 1) // MR, (N + NR - 1) // NR
    for s in range((K + KC - 1) // KC):
        kc = min(KC, K - s * KC)
        slice_beta = beta if s == 0 else np.float32(1.0)
        for g in range(groups):
            for h in range(panels):
                _packed_tile(c, g * MR * ldc + h * NR, ldc, min(MR, M - g * MR), min(NR, N - h * NR),
                             ap, a_at + g * a_group + s * KC * MR, bq, b_at + h * b_panel + s * KC * NR, kc,
                             alpha, slice_beta, edge)


# ---------------------------------------------------------------------------------------------
# The dot-product form (NT, both operands along K, in place; `gemm_nt_serial`).


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _store(c, idx, total, alpha, beta):
    if beta == np.float32(0.0):
        c[idx] = alpha * total
    else:
        c[idx] = alpha * total + beta * c[idx]


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _tile_4x4(c, c0, ldc, a, a0, lda, b, b0, ldb, kc, alpha, beta):
    """c[c0 + i*ldc + j] = alpha * sum_p a[a0 + i*lda + p] * b[b0 + j*ldb + p] + beta * c[...], i, j < 4."""
    # Slices whose index starts at 0: Numba drops its negative-index wraparound for them, which
    # otherwise turns the vector loads into gathers.
    a_0 = a[a0 : a0 + kc]
    a_1 = a[a0 + lda : a0 + lda + kc]
    a_2 = a[a0 + 2 * lda : a0 + 2 * lda + kc]
    a_3 = a[a0 + 3 * lda : a0 + 3 * lda + kc]
    b_0 = b[b0 : b0 + kc]
    b_1 = b[b0 + ldb : b0 + ldb + kc]
    b_2 = b[b0 + 2 * ldb : b0 + 2 * ldb + kc]
    b_3 = b[b0 + 3 * ldb : b0 + 3 * ldb + kc]
    s00 = s01 = s02 = s03 = np.float32(0.0)
    s10 = s11 = s12 = s13 = np.float32(0.0)
    s20 = s21 = s22 = s23 = np.float32(0.0)
    s30 = s31 = s32 = s33 = np.float32(0.0)
    for p in range(kc):
        x0 = a_0[p]
        x1 = a_1[p]
        x2 = a_2[p]
        x3 = a_3[p]
        y0 = b_0[p]
        y1 = b_1[p]
        y2 = b_2[p]
        y3 = b_3[p]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    _store(c, c0, s00, alpha, beta)
    _store(c, c0 + 1, s01, alpha, beta)
    _store(c, c0 + 2, s02, alpha, beta)
    _store(c, c0 + 3, s03, alpha, beta)
    r = c0 + ldc
    _store(c, r, s10, alpha, beta)
    _store(c, r + 1, s11, alpha, beta)
    _store(c, r + 2, s12, alpha, beta)
    _store(c, r + 3, s13, alpha, beta)
    r += ldc
    _store(c, r, s20, alpha, beta)
    _store(c, r + 1, s21, alpha, beta)
    _store(c, r + 2, s22, alpha, beta)
    _store(c, r + 3, s23, alpha, beta)
    r += ldc
    _store(c, r, s30, alpha, beta)
    _store(c, r + 1, s31, alpha, beta)
    _store(c, r + 2, s32, alpha, beta)
    _store(c, r + 3, s33, alpha, beta)


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _tile_edge(c, c0, ldc, a, a0, lda, b, b0, ldb, mr, nr, kc, alpha, beta):
    """The ragged border: an mr x nr (< 4 x 4) tile, one vectorised dot product per element."""
    for i in range(mr):
        a_i = a[a0 + i * lda : a0 + i * lda + kc]
        for j in range(nr):
            b_j = b[b0 + j * ldb : b0 + j * ldb + kc]
            total = np.float32(0.0)
            for p in range(kc):
                total += a_i[p] * b_j[p]
            _store(c, c0 + i * ldc + j, total, alpha, beta)


@njit(cache=True, nogil=True)
def _dot_k_slice(K):
    """The K slice: K cut into equal slices of at most DOT_KC, each a multiple of the vector length
    so that only the last one has a remainder."""
    k_slices = (K + DOT_KC - 1) // DOT_KC
    return (((K + k_slices - 1) // k_slices) + 15) // 16 * 16


@njit(fastmath=True, cache=True, nogil=True)
def _dot_macro_tile(c, ldc, a, lda, b, ldb, i0, j0, mb, nb, K, kc_size, alpha, beta):
    """Rows i0 .. i0+mb, columns j0 .. j0+nb of c, the whole K, one K slice after the other."""
    for p0 in range(0, K, kc_size):
        kc = min(kc_size, K - p0)
        # beta applies once, on the first K slice; later slices add to what is there.
        slice_beta = beta if p0 == 0 else np.float32(1.0)
        for jj in range(0, nb, DOT_NR):
            nr = min(DOT_NR, nb - jj)
            for ii in range(0, mb, DOT_MR):
                mr = min(DOT_MR, mb - ii)
                c0 = (i0 + ii) * ldc + j0 + jj
                a0 = (i0 + ii) * lda + p0
                b0 = (j0 + jj) * ldb + p0
                if mr == DOT_MR and nr == DOT_NR:
                    _tile_4x4(c, c0, ldc, a, a0, lda, b, b0, ldb, kc, alpha, slice_beta)
                else:
                    _tile_edge(c, c0, ldc, a, a0, lda, b, b0, ldb, mr, nr, kc, alpha, slice_beta)


@njit(fastmath=True, cache=True, nogil=True)
def gemm_nt_serial(c, ldc, a, lda, b, ldb, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*lda + p] * b[j*ldb + p] + beta * c[i*ldc + j] on the calling
    thread, both operands read in place along K: the dot-product form, for conv2d's NT products
    (the forward over patches, the weight gradients), whose K is long and whose c is short. There
    each value of op(b) is used by only Kg rows of c, so the packed kernel's copy of it weighs: with
    the copy value by value it was slower (conv1 forward 74-76 -> 104-121 ms, the weight gradients
    1.3-1.6x), with the vectorised copy a wash (conv totals within the runs' noise, and no faster
    to compile), both measured alternately against this form (bench/results/cpu.md)."""
    kc_size = _dot_k_slice(K)
    for i0 in range(0, M, DOT_MB):
        for j0 in range(0, N, DOT_NB):
            _dot_macro_tile(c, ldc, a, lda, b, ldb, i0, j0, min(DOT_MB, M - i0), min(DOT_NB, N - j0), K, kc_size,
                            alpha, beta)


@njit(parallel=True, cache=True, nogil=True)
def transpose_into(dst, src):
    """dst[i, j] = src[j, i] (2-D, C-contiguous): blocks of 64 rows of src per task, so that each
    task reads a block of src from L1 and writes runs of dst's rows."""
    rows, cols = src.shape
    for t in prange((rows + 63) // 64):
        for j in range(cols):
            for i in range(t * 64, min(rows, t * 64 + 64)):
                dst[j, i] = src[i, j]


def gemm(c, a, b, trans_a, trans_b, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c on 2-D C-contiguous float32 arrays (see the module doc).
    NT (a @ b.T, the FC forward's form) is computed as c^T = b @ a.T by `gemm_rows_a`, which reads
    b's rows in place, into a transposed copy of c."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    alpha, beta = np.float32(alpha), np.float32(beta)
    if trans_b and not trans_a:
        ct = np.empty((N, M), dtype=np.float32)
        if beta != 0.0:
            transpose_into(ct, c)
        gemm_rows_a(ct.reshape(-1), M, b.reshape(-1), K, a.reshape(-1), UNIT_STRIDE, np.int64(K), N, M, K, alpha, beta)
        transpose_into(c, ct)
        return
    gemm_strided(
        c.reshape(-1), N,
        a.reshape(-1), a.shape[1], bool(trans_a),
        b.reshape(-1), b.shape[1], bool(trans_b),
        M, N, K, alpha, beta,
    )
