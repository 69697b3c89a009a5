"""GEMM on the CPU:  c = alpha * op(a) @ op(b) + beta * c   (c is not read when beta == 0).

    op(a) = a (M, K), or a.T with a stored (K, M) when trans_a
    op(b) = b (K, N), or b.T with b stored (N, K) when trans_b
    c     (M, N)
All float32, C-contiguous (row-major).

Two kernels with the same contract:
- `gemm_naive`: one dot product per element of c, a plain loop over K. The reference.
- `gemm_strided` (used by `gemm` and `linear`), two forms chosen by the layout of op(b):
  * op(b) = b.T (the "NT" case, b stored (N, K)): every element of c is the dot product of a row
    of op(a) with a row of b, two vectors running along K. LLVM vectorises the loop over K
    (vfmadd...ps on zmm registers on the AVX-512 dev machine); a 4x4 tile of c keeps 16 dot
    products in registers, so 8 vector loads feed 16 FMAs. op(a) = a.T is packed to run along K,
    whole, up front, when every macro tile would need it, else one panel per macro tile. c is cut
    into macro tiles (MB x NB) handed out with prange; K is walked in equal slices of at most KC,
    so a micro panel of b stays in L1 and a panel of op(a) in L2 while they are used.
  * op(b) = b (the "NN" and "TN" cases, b stored (K, N)): rows of c are updated with rows of b,
    vectors running along N: c[i, :] += op(a)[i, p] * b[p, :], four rows of c and eight rows of b
    per pass (`_rows_4x8`), op(a) read as scalars in either layout (no packing). This form has no
    horizontal sums, which cost the dot-product form half its time when K is the batch of 128
    (the weight gradient of an FC layer). Tiles of c (ROWS_MB x ROWS_NB) are handed out with prange.
  Each element of c belongs to one tile, so one thread writes it, always summing in the same
  order: results are bit-identical run to run and do not depend on the number of threads.
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
# Row updates (op(b) stored along N): tiles of c per parallel task, and the K slice of b that stays
# in L2 while the tile's rows pass over it. A tile as tall as the FC batch copies each slice of the
# weights once (ROWS_MB = 64 copied it twice: bwd-data 0.72-0.80x numpy against 0.75-0.88x).
ROWS_MB = 128
ROWS_NB = 512
ROWS_KC = 256


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
def _macro_tile(c, ldc, a, lda, trans_a, b, ldb, i0, j0, mb, nb, K, kc_size, alpha, beta):
    """Rows i0 .. i0+mb, columns j0 .. j0+nb of c, the whole K, one K slice after the other."""
    panel_pitch = padded_pitch(kc_size)
    a_panel = np.empty(mb * panel_pitch if trans_a else 0, dtype=np.float32)
    for p0 in range(0, K, kc_size):
        kc = min(kc_size, K - p0)
        # beta applies once, on the first K slice; later slices add to what is there.
        slice_beta = beta if p0 == 0 else np.float32(1.0)
        if trans_a:
            _pack(a_panel, 0, panel_pitch, a, p0 * lda + i0, lda, mb, kc)
            av, a_base, a_pitch = a_panel, 0, panel_pitch
        else:
            av, a_base, a_pitch = a, i0 * lda + p0, lda
        bv, b_base, b_pitch = b, j0 * ldb + p0, ldb
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


# ---------------------------------------------------------------------------------------------
# Row updates: op(b) stored along N (the NN and TN cases).


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows_4x8(c, c0, ldc, a, a0, sa_i, sa_p, b, b0, ldb, kc, nb, alpha):
    """c[c0 + r*ldc + j] += alpha * sum_{p < kc} a[a0 + r*sa_i + p*sa_p] * b[b0 + p*ldb + j] for r < 4,
    j < nb; kc a multiple of 8.

    Four rows of c take eight rows of b at a time: each vector of b read from the cache feeds four
    FMAs, and each vector of c is loaded and stored once per eight FMAs. The 32 scalars of a are
    loop-invariant over j (LLVM vectorises the loop over j and broadcasts them). Fewer rows of b
    per pass measured slower on the dev machine (4 rows of b: about 40-70 GFLOP/s on one core
    against 83-92), as the stores to c then disturb the loads of b more often.
    """
    c_0 = c[c0 : c0 + nb]
    c_1 = c[c0 + ldc : c0 + ldc + nb]
    c_2 = c[c0 + 2 * ldc : c0 + 2 * ldc + nb]
    c_3 = c[c0 + 3 * ldc : c0 + 3 * ldc + nb]
    for p in range(0, kc, 8):
        # x<r><u> = alpha * op(a)[row r, p + u]
        q = a0 + p * sa_p
        x00, x01, x02, x03 = alpha * a[q], alpha * a[q + sa_p], alpha * a[q + 2 * sa_p], alpha * a[q + 3 * sa_p]
        x04, x05, x06, x07 = alpha * a[q + 4 * sa_p], alpha * a[q + 5 * sa_p], alpha * a[q + 6 * sa_p], alpha * a[q + 7 * sa_p]
        q += sa_i
        x10, x11, x12, x13 = alpha * a[q], alpha * a[q + sa_p], alpha * a[q + 2 * sa_p], alpha * a[q + 3 * sa_p]
        x14, x15, x16, x17 = alpha * a[q + 4 * sa_p], alpha * a[q + 5 * sa_p], alpha * a[q + 6 * sa_p], alpha * a[q + 7 * sa_p]
        q += sa_i
        x20, x21, x22, x23 = alpha * a[q], alpha * a[q + sa_p], alpha * a[q + 2 * sa_p], alpha * a[q + 3 * sa_p]
        x24, x25, x26, x27 = alpha * a[q + 4 * sa_p], alpha * a[q + 5 * sa_p], alpha * a[q + 6 * sa_p], alpha * a[q + 7 * sa_p]
        q += sa_i
        x30, x31, x32, x33 = alpha * a[q], alpha * a[q + sa_p], alpha * a[q + 2 * sa_p], alpha * a[q + 3 * sa_p]
        x34, x35, x36, x37 = alpha * a[q + 4 * sa_p], alpha * a[q + 5 * sa_p], alpha * a[q + 6 * sa_p], alpha * a[q + 7 * sa_p]
        r = b0 + p * ldb
        b_0 = b[r : r + nb]
        b_1 = b[r + ldb : r + ldb + nb]
        b_2 = b[r + 2 * ldb : r + 2 * ldb + nb]
        b_3 = b[r + 3 * ldb : r + 3 * ldb + nb]
        b_4 = b[r + 4 * ldb : r + 4 * ldb + nb]
        b_5 = b[r + 5 * ldb : r + 5 * ldb + nb]
        b_6 = b[r + 6 * ldb : r + 6 * ldb + nb]
        b_7 = b[r + 7 * ldb : r + 7 * ldb + nb]
        for j in range(nb):
            y0, y1, y2, y3 = b_0[j], b_1[j], b_2[j], b_3[j]
            y4, y5, y6, y7 = b_4[j], b_5[j], b_6[j], b_7[j]
            c_0[j] += x00 * y0 + x01 * y1 + x02 * y2 + x03 * y3 + x04 * y4 + x05 * y5 + x06 * y6 + x07 * y7
            c_1[j] += x10 * y0 + x11 * y1 + x12 * y2 + x13 * y3 + x14 * y4 + x15 * y5 + x16 * y6 + x17 * y7
            c_2[j] += x20 * y0 + x21 * y1 + x22 * y2 + x23 * y3 + x24 * y4 + x25 * y5 + x26 * y6 + x27 * y7
            c_3[j] += x30 * y0 + x31 * y1 + x32 * y2 + x33 * y3 + x34 * y4 + x35 * y5 + x36 * y6 + x37 * y7


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows_edge(c, c0, ldc, a, a0, sa_i, sa_p, b, b0, ldb, mr, p_first, p_end, nb, alpha):
    """Rows r < mr of c, the K indices p_first <= p < p_end (the border _rows_4x8 leaves): one row
    of b per pass, so each vector of c is loaded and stored per FMA."""
    for r in range(mr):
        c_r = c[c0 + r * ldc : c0 + r * ldc + nb]
        for p in range(p_first, p_end):
            x = alpha * a[a0 + r * sa_i + p * sa_p]
            b_p = b[b0 + p * ldb : b0 + p * ldb + nb]
            for j in range(nb):
                c_r[j] += x * b_p[j]


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows_slice(c, c0, ldc, a, a0, sa_i, sa_p, b, b0, ldb, mr, kc, nb, alpha):
    """c[c0 + r*ldc + j] += alpha * sum_{p < kc} a[a0 + r*sa_i + p*sa_p] * b[b0 + p*ldb + j] for r < mr,
    j < nb: one K slice over mr rows of c, four rows and eight rows of b at a time, then the borders."""
    m4 = mr - mr % 4
    k8 = kc - kc % 8
    for i in range(0, m4, 4):
        _rows_4x8(c, c0 + i * ldc, ldc, a, a0 + i * sa_i, sa_i, sa_p, b, b0, ldb, k8, nb, alpha)
        if k8 < kc:
            _rows_edge(c, c0 + i * ldc, ldc, a, a0 + i * sa_i, sa_i, sa_p, b, b0, ldb, 4, k8, kc, nb, alpha)
    if m4 < mr:
        _rows_edge(c, c0 + m4 * ldc, ldc, a, a0 + m4 * sa_i, sa_i, sa_p, b, b0, ldb, mr - m4, 0, kc, nb, alpha)


@njit(fastmath=True, cache=True, nogil=True)
def _rows_tile(c, ldc, a, sa_i, sa_p, b, ldb, i0, j0, mb, nb, K, alpha, beta, tile, panel):
    """Rows i0 .. i0+mb, columns j0 .. j0+nb of c = alpha * op(a) @ b + beta * c, b stored along N:
    op(a)[i, p] = a[i*sa_i + p*sa_p] (either layout, read as scalars), b[p, j] = b[p*ldb + j].

    The tile is summed in a scratch copy and K is walked in slices of ROWS_KC whose rows of b are
    copied out first: both with a row pitch that is not a multiple of 4 KiB. (AlexNet's rows are
    9216 or 4096 floats: in place, the four rows of c and of b that _rows_4x8 walks together all
    fall on the same L1 sets, and every store to c stalls the next loads of b that share its
    address bits.) A slice of b stays in L2 while every row of the tile passes over it.
    `tile` and `panel` are the caller's scratch, at least ROWS_MB and ROWS_KC rows of
    padded_pitch(ROWS_NB).
    """
    pitch = padded_pitch(nb)
    for x in range(mb * pitch):
        tile[x] = np.float32(0.0)
    for p0 in range(0, K, ROWS_KC):
        kc = min(ROWS_KC, K - p0)
        for p in range(kc):
            src = b[(p0 + p) * ldb + j0 : (p0 + p) * ldb + j0 + nb]
            dst = panel[p * pitch : p * pitch + nb]
            for j in range(nb):
                dst[j] = src[j]
        _rows_slice(tile, 0, pitch, a, i0 * sa_i + p0 * sa_p, sa_i, sa_p, panel, 0, pitch, mb, kc, nb, alpha)
    for i in range(mb):
        c_i = c[(i0 + i) * ldc + j0 : (i0 + i) * ldc + j0 + nb]
        t_i = tile[i * pitch : i * pitch + nb]
        if beta == np.float32(0.0):
            for j in range(nb):
                c_i[j] = t_i[j]
        else:
            for j in range(nb):
                c_i[j] = t_i[j] + beta * c_i[j]


@njit(fastmath=True, cache=True, nogil=True)
def gemm_rows_serial(c, ldc, a, sa_i, sa_p, b, ldb, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*sa_i + p*sa_p] * b[p*ldb + j] + beta * c[i*ldc + j] on the
    calling thread, for callers that share out whole GEMMs over the threads (conv2d, per chunk of
    images) and hand over c and b with padded row pitches (see padded_pitch), so both are used in
    place. For each block of ROWS_NB columns and slice of ROWS_KC rows of b (which stays in L2),
    every row of c passes over the slice, four at a time."""
    for i in range(M):
        c_i = c[i * ldc : i * ldc + N]
        if beta == np.float32(0.0):
            for j in range(N):
                c_i[j] = np.float32(0.0)
        elif beta != np.float32(1.0):
            for j in range(N):
                c_i[j] *= beta
    for j0 in range(0, N, ROWS_NB):
        nb = min(ROWS_NB, N - j0)
        for p0 in range(0, K, ROWS_KC):
            _rows_slice(c, j0, ldc, a, p0 * sa_p, sa_i, sa_p, b, p0 * ldb + j0, ldb, M, min(ROWS_KC, K - p0), nb,
                        alpha)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gemm_strided(c, ldc, a, lda, trans_a, b, ldb, trans_b, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p op(a)[i, p] op(b)[p, j] + beta * c[i*ldc + j], 1-D arrays.

    op(a)[i, p] = a[p*lda + i] if trans_a else a[i*lda + p]
    op(b)[p, j] = b[j*ldb + p] if trans_b else b[p*ldb + j]
    The macro tiles of c are shared out over the threads.
    """
    if not trans_b:
        m_tiles = (M + ROWS_MB - 1) // ROWS_MB
        n_tiles = (N + ROWS_NB - 1) // ROWS_NB
        sa_i, sa_p = (1, lda) if trans_a else (lda, 1)
        pitch = padded_pitch(min(ROWS_NB, N))
        for t in prange(m_tiles * n_tiles):
            i0 = (t // n_tiles) * ROWS_MB
            j0 = (t % n_tiles) * ROWS_NB
            tile = np.empty(ROWS_MB * pitch, dtype=np.float32)
            panel = np.empty(min(ROWS_KC, K) * pitch, dtype=np.float32)
            _rows_tile(c, ldc, a, sa_i, sa_p, b, ldb, i0, j0, min(ROWS_MB, M - i0), min(ROWS_NB, N - j0), K,
                       alpha, beta, tile, panel)
        return
    mb_size, nb_size, kc_size = _tiling(M, N, K, 8)
    m_tiles = (M + mb_size - 1) // mb_size
    n_tiles = (N + nb_size - 1) // nb_size
    # An operand that every macro tile would pack again is packed once, whole, up front.
    if trans_a and n_tiles > 1:
        pitch = padded_pitch(K)
        packed = np.empty(M * pitch, dtype=np.float32)
        _pack_all(packed, pitch, a, lda, M, K)
        a, lda, trans_a = packed, pitch, False
    for t in prange(m_tiles * n_tiles):
        i0 = (t // n_tiles) * mb_size
        j0 = (t % n_tiles) * nb_size
        _macro_tile(c, ldc, a, lda, trans_a, b, ldb, i0, j0, min(mb_size, M - i0), min(nb_size, N - j0),
                    K, kc_size, alpha, beta)


@njit(fastmath=True, cache=True, nogil=True)
def gemm_nt_serial(c, ldc, a, lda, b, ldb, M, N, K, alpha, beta):
    """c[i*ldc + j] = alpha * sum_p a[i*lda + p] * b[j*ldb + p] + beta * c[i*ldc + j] on the calling
    thread: for callers that already share out whole GEMMs over the threads (conv2d, per image)."""
    mb_size, nb_size, kc_size = _tiling(M, N, K, 1)
    for i0 in range(0, M, mb_size):
        for j0 in range(0, N, nb_size):
            _macro_tile(c, ldc, a, lda, False, b, ldb, i0, j0, min(mb_size, M - i0), min(nb_size, N - j0),
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
