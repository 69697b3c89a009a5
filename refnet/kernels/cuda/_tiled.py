"""The one tiled matrix-multiply skeleton behind GEMM, linear and convolution on the GPU.

    C[g, m, n] = sum_k A[g, m, k] * B[g, k, n]      m < M, n < N, k < K, g < groups

A, B and C are never materialised: each user supplies @cuda.jit device functions that read an
element of A or B straight from its own arrays (a plain matrix, a transposed matrix, an image
gathered through a convolution window: "implicit GEMM") and write an element of C (with alpha/beta,
bias, or an NCHW scatter). Reading is split in two so that the costly decoding of a row m of A or
a column n of B (into image, pixel and group offsets) runs once per thread, not at every K step:

    locate_a(geom, g, m) -> (int32, int32, int32)        "where": what load_a needs to know of m
    load_a(a, geom, g, where0, where1, where2, k) -> float32     called only for m < M, k < K
    locate_b(geom, g, n) -> (int32, int32, int32)
    load_b(b, geom, g, where0, where1, where2, k) -> float32     called only for n < N, k < K
    store(c, bias, geom, g, m, n, value, alpha, beta)            called only for m < M, n < N

`geom` is a tuple of int32 sizes the functions decode indices with.

Blocking (the classic register-blocked SGEMM): a block of THREADS = 256 threads computes a
TILE_M x TILE_N = 128 x 128 tile of C, stepping through K by TILE_K = 8. Each step the block copies
an A tile (TILE_K x TILE_M) and a B tile (TILE_K x TILE_N) into shared memory (fetched into
registers one step ahead, so the global loads overlap the arithmetic), then every thread
accumulates an 8 x 8 sub-tile in registers, reading 8 + 8 values from shared memory for 64
fused multiply-adds. A thread owns rows ty + i*16 and columns tx + j*16 (interleaved, not a
contiguous 8 x 8 patch) so that a warp reads consecutive shared-memory words (no bank conflicts)
and stores consecutive columns of C (coalesced). Shared tiles are padded by 4 words per row so the
transposing copy into them is free of bank conflicts too.

Split-K: when M x N has too few tiles to fill the GPU (backward-filter of a convolution reduces
over batch x height x width), blockIdx.z also splits K into `splits` ranges. Each range writes its
raw partial sums to a workspace (groups*splits, M, N); a second kernel adds the partials in a
fixed order and calls `store`, so results are deterministic run to run.
"""

import math

import numpy as np
from numba import cuda, float32, int32, uint32

TILE_M = 128
TILE_N = 128
TILE_K = 8
THREAD_M = 8  # rows of C per thread
THREAD_N = 8  # columns of C per thread
THREADS_N = TILE_N // THREAD_N  # 16 threads across a tile's columns
THREADS_M = TILE_M // THREAD_M  # 16 threads down its rows
THREADS = THREADS_M * THREADS_N  # 256
LOADS = TILE_M * TILE_K // THREADS  # elements of each tile one thread copies per K step (4)
assert LOADS == TILE_N * TILE_K // THREADS
PAD = 4
# Shared-memory shapes must be compile-time literals, not expressions of them.
A_TILE_ROW = TILE_M + PAD
B_TILE_ROW = TILE_N + PAD
A_TILE_SIZE = TILE_K * A_TILE_ROW
B_TILE_SIZE = TILE_K * B_TILE_ROW

# With fewer tiles than this, K is split (about two blocks per SM on an H100/H200 class GPU).
TARGET_BLOCKS = 264
MIN_K_PER_SPLIT = 128

REDUCE_THREADS = 256


@cuda.jit(device=True, inline=True)
def locate_row(geom, g, i):
    """The `locate` of a plain matrix: the row (of A) or column (of B) index itself."""
    return i, int32(0), int32(0)


def _make_tile_copier(locate, load, tile_width, k_fastest):
    """Device functions copying one TILE_K x tile_width tile of A (i = m) or B (i = n) into shared
    memory (flat, rows padded to tile_width + PAD), zero outside the matrix.

    Each thread copies the same LOADS tile positions at every K step, so `locate_all` runs
    `locate` on their i indices once, before the K loop, into `where` (LOADS, 3); `fetch` then
    only decodes k. The copy is split into `fetch` (global memory to registers) and `stash`
    (registers to shared memory) so that the kernel can fetch the next tile while it multiplies
    the current one. With `k_fastest` consecutive threads take consecutive k, else consecutive i:
    whichever index `load` finds contiguous in memory (coalesced reads).
    """
    row = tile_width + PAD

    @cuda.jit(device=True, inline=True)
    def tile_position(tid, e):
        flat = tid + int32(e * THREADS)
        if k_fastest:
            return flat // int32(TILE_K), flat % int32(TILE_K)
        return flat % int32(tile_width), flat // int32(tile_width)

    @cuda.jit(device=True, inline=True)
    def locate_all(where, geom, g, tid, i0, extent):
        for e in range(LOADS):
            ii, kk = tile_position(tid, e)
            if i0 + ii < extent:
                first, second, third = locate(geom, g, i0 + ii)
                where[e, 0] = first
                where[e, 1] = second
                where[e, 2] = third

    @cuda.jit(device=True, inline=True)
    def fetch(staged, src, geom, g, where, tid, i0, extent, k0, k_end):
        """This thread's LOADS elements of the tile at k0, from global memory into registers."""
        for e in range(LOADS):
            ii, kk = tile_position(tid, e)
            value = float32(0.0)
            if i0 + ii < extent and k0 + kk < k_end:
                value = load(src, geom, g, where[e, 0], where[e, 1], where[e, 2], k0 + kk)
            staged[e] = value

    @cuda.jit(device=True, inline=True)
    def stash(tile, staged, tid):
        """The fetched elements, from registers into the shared tile."""
        for e in range(LOADS):
            ii, kk = tile_position(tid, e)
            tile[uint32(kk * row + ii)] = staged[e]

    return locate_all, fetch, stash


def make_tiled_matmul(locate_a, load_a, locate_b, load_b, store, a_k_fastest, b_k_fastest):
    """Build (tiled_kernel, reduce_kernel) around the five device functions.

    `a_k_fastest` / `b_k_fastest` say which index of A / B is contiguous in memory, so that
    consecutive threads copy consecutive addresses (coalesced) into the shared tiles.
    """
    locate_a_all, fetch_a, stash_a = _make_tile_copier(locate_a, load_a, TILE_M, a_k_fastest)
    locate_b_all, fetch_b, stash_b = _make_tile_copier(locate_b, load_b, TILE_N, b_k_fastest)

    @cuda.jit(fastmath=True)
    def tiled_kernel(c, a, b, bias, geom, M, N, K, k_per_split, splits, alpha, beta, partial):
        # (TILE_K, *_TILE_ROW) tiles, stored flat so that offsets can be unsigned (see below)
        a_tile = cuda.shared.array(A_TILE_SIZE, float32)
        b_tile = cuda.shared.array(B_TILE_SIZE, float32)
        acc = cuda.local.array((THREAD_M, THREAD_N), float32)
        a_frag = cuda.local.array(THREAD_M, float32)
        b_frag = cuda.local.array(THREAD_N, float32)

        tid = int32(cuda.threadIdx.x)
        tx = tid % int32(THREADS_N)
        ty = tid // int32(THREADS_N)
        m0 = int32(cuda.blockIdx.y) * int32(TILE_M)
        n0 = int32(cuda.blockIdx.x) * int32(TILE_N)
        g = int32(cuda.blockIdx.z) // splits
        split = int32(cuda.blockIdx.z) - g * splits
        k_begin = split * k_per_split
        k_end = min(K, k_begin + k_per_split)

        for i in range(THREAD_M):
            for j in range(THREAD_N):
                acc[i, j] = float32(0.0)

        a_where = cuda.local.array((LOADS, 3), int32)
        b_where = cuda.local.array((LOADS, 3), int32)
        locate_a_all(a_where, geom, g, tid, m0, M)
        locate_b_all(b_where, geom, g, tid, n0, N)

        a_staged = cuda.local.array(LOADS, float32)
        b_staged = cuda.local.array(LOADS, float32)
        fetch_a(a_staged, a, geom, g, a_where, tid, m0, M, k_begin, k_end)
        fetch_b(b_staged, b, geom, g, b_where, tid, n0, N, k_begin, k_end)

        for k0 in range(k_begin, k_end, TILE_K):
            stash_a(a_tile, a_staged, tid)
            stash_b(b_tile, b_staged, tid)
            cuda.syncthreads()
            # Issue the next tile's global loads now: they complete while this tile is multiplied.
            if k0 + TILE_K < k_end:
                fetch_a(a_staged, a, geom, g, a_where, tid, m0, M, k0 + TILE_K, k_end)
                fetch_b(b_staged, b, geom, g, b_where, tid, n0, N, k0 + TILE_K, k_end)

            for kk in range(TILE_K):
                # unsigned offsets: no negative-index wrap-around code, and base + constant addressing
                a_row = uint32(kk * A_TILE_ROW) + uint32(ty)
                b_row = uint32(kk * B_TILE_ROW) + uint32(tx)
                for i in range(THREAD_M):
                    a_frag[i] = a_tile[a_row + uint32(i * THREADS_M)]
                for j in range(THREAD_N):
                    b_frag[j] = b_tile[b_row + uint32(j * THREADS_N)]
                for i in range(THREAD_M):
                    for j in range(THREAD_N):
                        acc[i, j] += a_frag[i] * b_frag[j]
            # Nobody may overwrite the tiles while a slower warp still reads them.
            cuda.syncthreads()

        for i in range(THREAD_M):
            m = m0 + ty + int32(i * THREADS_M)
            if m < M:
                for j in range(THREAD_N):
                    n = n0 + tx + int32(j * THREADS_N)
                    if n < N:
                        if splits == 1:
                            store(c, bias, geom, g, m, n, acc[i, j], alpha, beta)
                        else:
                            partial[cuda.blockIdx.z, m, n] = acc[i, j]

    @cuda.jit
    def reduce_kernel(c, bias, geom, M, N, splits, alpha, beta, partial):
        flat = int32(cuda.grid(1))
        g = int32(cuda.blockIdx.y)
        if flat >= M * N:
            return
        m = flat // N
        n = flat - m * N
        total = float32(0.0)
        for s in range(splits):
            total += partial[g * splits + s, m, n]
        store(c, bias, geom, g, m, n, total, alpha, beta)

    return tiled_kernel, reduce_kernel


_SM_COUNT = []
_WORKSPACE = []


def _sm_count():
    if not _SM_COUNT:
        try:
            _SM_COUNT.append(int(cuda.get_current_device().MULTIPROCESSOR_COUNT))
        except Exception:  # the simulator's fake device has no attribute tables
            _SM_COUNT.append(TARGET_BLOCKS // 2)
    return _SM_COUNT[0]


def _workspace(count):
    """A float32 device buffer of at least `count` elements, allocated once and grown on demand.

    Launches go to the default stream in order, so one buffer serves every split-K call.
    """
    if not _WORKSPACE or _WORKSPACE[0].size < count:
        _WORKSPACE[:] = [cuda.device_array(count, dtype=np.float32)]
    return _WORKSPACE[0]


_ZERO_BIAS = {}


def bias_or_zeros(b, count):
    """`b`, or (when None) a cached device array of `count` zeros: stores always get a bias array."""
    if b is not None:
        return b
    if count not in _ZERO_BIAS:
        _ZERO_BIAS[count] = cuda.to_device(np.zeros(count, dtype=np.float32))
    return _ZERO_BIAS[count]


def choose_splits(M, N, K, groups):
    """How many ranges to split K into so that the launch fills the GPU (1 when it already does)."""
    tiles = math.ceil(M / TILE_M) * math.ceil(N / TILE_N) * groups
    wanted = math.ceil(2 * _sm_count() / tiles)
    most = max(1, K // MIN_K_PER_SPLIT)
    return max(1, min(wanted, most))


def launch(kernels, c, a, b, bias, geom, M, N, K, groups, alpha=1.0, beta=0.0, splits=None):
    """Run C = A @ B per group through `kernels` (from make_tiled_matmul); no host synchronisation."""
    tiled_kernel, reduce_kernel = kernels
    if splits is None:
        splits = choose_splits(M, N, K, groups)
    k_per_split = math.ceil(math.ceil(K / splits) / TILE_K) * TILE_K
    splits = math.ceil(K / k_per_split)
    geom = tuple(np.int32(v) for v in geom)
    if splits > 1:
        partial = _workspace(groups * splits * M * N)[: groups * splits * M * N].reshape(groups * splits, M, N)
    else:
        partial = _workspace(1)[:1].reshape(1, 1, 1)
    grid = (math.ceil(N / TILE_N), math.ceil(M / TILE_M), groups * splits)
    tiled_kernel[grid, THREADS](
        c, a, b, bias, geom, np.int32(M), np.int32(N), np.int32(K), np.int32(k_per_split),
        np.int32(splits), np.float32(alpha), np.float32(beta), partial,
    )
    if splits > 1:
        reduce_grid = (math.ceil(M * N / REDUCE_THREADS), groups)
        reduce_kernel[reduce_grid, REDUCE_THREADS](
            c, bias, geom, np.int32(M), np.int32(N), np.int32(splits), np.float32(alpha), np.float32(beta), partial
        )
