"""GEMM on the CPU:  c = alpha * op(a) @ op(b) + beta * c   (c is not read when beta == 0).

    op(a) = a (M, K), or a.T with a stored (K, M) when trans_a
    op(b) = b (K, N), or b.T with b stored (N, K) when trans_b
    c     (M, N)
All float32, C-contiguous (row-major).

Two kernels with the same contract:
- `gemm_naive`: one dot product per element of c, a plain loop over K. The reference.
- `gemm_strided` (used by `gemm` and `linear`): every element of c is the dot product of a row of
  op(a) with a column of op(b), two vectors running along K. When both are contiguous in memory
  (op(a) = a, op(b) = b.T: the "NT" case) LLVM vectorises the loop over K (vfmadd...ps on zmm
  registers on the AVX-512 dev machine); a 4x4 tile of c keeps 16 dot products in registers, so
  8 vector loads feed 16 FMAs. An operand that is not contiguous along K is copied so that it is
  (packing): whole, up front, when every macro tile would need it, else one panel per macro tile.
  c is cut into macro tiles (MB x NB) handed out with prange; K is walked in equal slices of at
  most KC, so an op(b) micro panel stays in L1 and an op(a) panel in L2 while they are used.
  Each element of c belongs to one macro tile, so one thread writes it, always summing in the
  same order: results are bit-identical run to run and do not depend on the number of threads.
- `gemm_nt_serial`: the NT case of the same tiles on the calling thread, for conv2d, which
  shares out whole images over the threads instead.

The flat views: the fast kernels take 1-D arrays and the row pitch of each matrix (`lda`, ...),
so callers can hand them a slice of a larger buffer without copying.
"""

import numpy as np
from numba import njit, prange

# Micro tile of c kept in registers: MR x NR dot products (16 accumulators + 8 operand vectors fit
# the 32 vector registers of AVX-512).
MR = 4
NR = 4
# Macro tile of c per parallel task, and the longest K slice: an op(b) micro panel (NR x KC) stays
# in L1 while it meets every row of the macro tile; an op(a) panel (MB x KC) stays in L2.
# (On the dev machine 512 beat 256 and matched 768 and 1024.)
MB = 128
NB = 256
KC = 512
# Packing: source rows read together, and rows per parallel task of a whole-matrix pack.
PACK_DEPTH = 8
PACK_ROWS = 64


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


@njit(cache=True, nogil=True, inline="always")
def _pack(dst, d0, pitch, src, s0, lds, rows, depth):
    """dst[d0 + r*pitch + p] = src[s0 + p*lds + r] for r < rows, p < depth: rows stored K-major
    (one K index per source row) copied out contiguous along K.

    PACK_DEPTH source rows at a time: their cache lines stay in L1 while r walks along them, and
    each destination row gets PACK_DEPTH consecutive floats. (Walking one whole column at a time
    instead hits a single cache set when the source pitch is a multiple of 4 KiB, as in AlexNet.)
    """
    for p0 in range(0, depth, PACK_DEPTH):
        pd = min(PACK_DEPTH, depth - p0)
        for r in range(rows):
            out = dst[d0 + r * pitch + p0 : d0 + r * pitch + p0 + pd]
            for u in range(pd):
                out[u] = src[s0 + (p0 + u) * lds + r]


@njit(parallel=True, cache=True, nogil=True)
def _pack_all(dst, pitch, src, lds, rows, depth):
    """_pack over a whole matrix, split by rows over the threads."""
    for t in prange((rows + PACK_ROWS - 1) // PACK_ROWS):
        r0 = t * PACK_ROWS
        _pack(dst, r0 * pitch, pitch, src, r0, lds, min(PACK_ROWS, rows - r0), depth)


@njit(cache=True, nogil=True)
def padded_pitch(length):
    """Row pitch of a packed panel: a whole number of cache lines, but not a multiple of 4 KiB
    (rows a multiple of 4 KiB apart share L1 sets and evict each other)."""
    pitch = (length + 15) // 16 * 16
    return pitch + 16 if pitch % 1024 == 0 else pitch


@njit(cache=True, nogil=True)
def _tiling(M, N, K, min_tasks):
    """(mb_size, nb_size, kc_size): macro tiles, shrunk until there are min_tasks of them (to keep
    every core busy on small GEMMs), and equal K slices, each a multiple of the vector length so
    that only the last one has a remainder."""
    mb_size = MB
    nb_size = NB
    while ((M + mb_size - 1) // mb_size) * ((N + nb_size - 1) // nb_size) < min_tasks and nb_size > 32:
        nb_size //= 2
    while ((M + mb_size - 1) // mb_size) * ((N + nb_size - 1) // nb_size) < min_tasks and mb_size > 16:
        mb_size //= 2
    k_slices = (K + KC - 1) // KC
    kc_size = (((K + k_slices - 1) // k_slices) + 15) // 16 * 16
    return mb_size, nb_size, kc_size


@njit(fastmath=True, cache=True, nogil=True)
def _macro_tile(c, ldc, a, lda, trans_a, b, ldb, trans_b, i0, j0, mb, nb, K, kc_size, alpha, beta):
    """Rows i0 .. i0+mb, columns j0 .. j0+nb of c, the whole K, one K slice after the other."""
    panel_pitch = padded_pitch(kc_size)
    a_panel = np.empty(mb * panel_pitch if trans_a else 0, dtype=np.float32)
    b_panel = np.empty(nb * panel_pitch if not trans_b else 0, dtype=np.float32)
    for p0 in range(0, K, kc_size):
        kc = min(kc_size, K - p0)
        # beta applies once, on the first K slice; later slices add to what is there.
        slice_beta = beta if p0 == 0 else np.float32(1.0)
        if trans_a:
            _pack(a_panel, 0, panel_pitch, a, p0 * lda + i0, lda, mb, kc)
            av, a_base, a_pitch = a_panel, 0, panel_pitch
        else:
            av, a_base, a_pitch = a, i0 * lda + p0, lda
        if trans_b:
            bv, b_base, b_pitch = b, j0 * ldb + p0, ldb
        else:
            _pack(b_panel, 0, panel_pitch, b, p0 * ldb + j0, ldb, nb, kc)
            bv, b_base, b_pitch = b_panel, 0, panel_pitch
        for jj in range(0, nb, NR):
            nr = min(NR, nb - jj)
            for ii in range(0, mb, MR):
                mr = min(MR, mb - ii)
                c0 = (i0 + ii) * ldc + j0 + jj
                a0 = a_base + ii * a_pitch
                b0 = b_base + jj * b_pitch
                if mr == MR and nr == NR:
                    _tile_4x4(c, c0, ldc, av, a0, a_pitch, bv, b0, b_pitch, kc, alpha, slice_beta)
                else:
                    _tile_edge(c, c0, ldc, av, a0, a_pitch, bv, b0, b_pitch, mr, nr, kc, alpha, slice_beta)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gemm_strided(c, ldc, a, lda, trans_a, b, ldb, trans_b, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p op(a)[i, p] op(b)[p, j] + beta * c[i*ldc + j], 1-D arrays.

    op(a)[i, p] = a[p*lda + i] if trans_a else a[i*lda + p]
    op(b)[p, j] = b[j*ldb + p] if trans_b else b[p*ldb + j]
    The macro tiles of c are shared out over the threads.
    """
    mb_size, nb_size, kc_size = _tiling(M, N, K, 8)
    m_tiles = (M + mb_size - 1) // mb_size
    n_tiles = (N + nb_size - 1) // nb_size
    # An operand that every macro tile would pack again is packed once, whole, up front.
    if trans_a and n_tiles > 1:
        pitch = padded_pitch(K)
        packed = np.empty(M * pitch, dtype=np.float32)
        _pack_all(packed, pitch, a, lda, M, K)
        a, lda, trans_a = packed, pitch, False
    if not trans_b and m_tiles > 1:
        pitch = padded_pitch(K)
        packed = np.empty(N * pitch, dtype=np.float32)
        _pack_all(packed, pitch, b, ldb, N, K)
        b, ldb, trans_b = packed, pitch, True
    for t in prange(m_tiles * n_tiles):
        i0 = (t // n_tiles) * mb_size
        j0 = (t % n_tiles) * nb_size
        _macro_tile(c, ldc, a, lda, trans_a, b, ldb, trans_b, i0, j0, min(mb_size, M - i0), min(nb_size, N - j0),
                    K, kc_size, alpha, beta)


@njit(fastmath=True, cache=True, nogil=True)
def gemm_nt_serial(c, ldc, a, lda, b, ldb, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*lda + p] * b[j*ldb + p] + beta * c[i*ldc + j] on the calling
    thread: for callers that already share out whole GEMMs over the threads (conv2d, per image)."""
    mb_size, nb_size, kc_size = _tiling(M, N, K, 1)
    for i0 in range(0, M, mb_size):
        for j0 in range(0, N, nb_size):
            _macro_tile(c, ldc, a, lda, False, b, ldb, True, i0, j0, min(mb_size, M - i0), min(nb_size, N - j0),
                        K, kc_size, alpha, beta)


def gemm(c, a, b, trans_a, trans_b, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c on 2-D C-contiguous float32 arrays (see the module doc)."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    gemm_strided(
        c.reshape(-1), N,
        a.reshape(-1), a.shape[1], bool(trans_a),
        b.reshape(-1), b.shape[1], bool(trans_b),
        M, N, K, np.float32(alpha), np.float32(beta),
    )
