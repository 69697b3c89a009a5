"""The one tiled matrix-multiply skeleton behind GEMM, linear and convolution on the GPU.

    C[g, m, n] = sum_k A[g, m, k] * B[g, k, n]      m < M, n < N, k < K, g < groups

A, B and C are never materialised: every array is passed flat (1-D) and each operand says where
its element (i, k) lives as the sum of two int32 offsets, one fixed by the row/column i and one by
k, so the K loop only adds (implicit GEMM; no per-element decoding, no division):

    mode "rows"        element (i, k) at locate(i).base + k                       (row-major, k contiguous)
    mode "table_rows"  element (i, k) at locate(i).base + table[k]                (k contiguous in runs)
    mode "cols"        element (i, k) at locate(i).base + k * step(geom)          (i contiguous)
    mode "gather"      element (i, k) at locate(i).base + table[4k]; it is 0 unless
                       0 <= locate(i).h + table[4k+1] < limits(geom)[0] and
                       0 <= locate(i).w + table[4k+2] < limits(geom)[1]           (a convolution window)

with `locate(geom, g, i) -> (base, h, w)` (int32) run once per thread before the K loop, and the
tables (int32, built by the host once per geometry, padded with entries that read nothing up to a
multiple of TILE_K plus one tile, which the prefetch after the last tile reads) read once per
element per K tile. C is written through
`store(c, bias, geom, g, m, n, c_row(geom, g, m) + c_col(geom, g, n), value, alpha, beta)`.

Blocking (the classic register-blocked SGEMM): a block of THREADS = 256 threads computes a
TILE_M x TILE_N = 128 x 128 tile of C, stepping through K by TILE_K = 16. Each step the block copies
an A tile and a B tile (TILE_K rows of 128, padded to TILE_ROW = 132 words so the transposing copy
has few bank conflicts and rows stay 16-byte aligned) into shared memory. Every thread accumulates
8 x 8 outputs: rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, columns tx*4 + {0..3} and 64 + tx*4 + {0..3},
so at each k it reads its 8 + 8 fragment values as four 128-bit loads (LDS.128; a warp's 32 reads
cover two broadcast A addresses and 64 consecutive B words: conflict-free) for 64 fused
multiply-adds: about 90% of the issued instructions are FFMA.

Pipelining: the next tile's global loads are issued into registers before the current tile is
multiplied, and the shared tiles are double-buffered, so one barrier per K tile suffices: iteration
t reads buffer t%2 and then writes buffer (t+1)%2, which every warp finished reading before the
barrier that ended iteration t-1; the barrier ending iteration t publishes it for iteration t+1.

Index arithmetic is int32 throughout (Numba would otherwise type it as 64-bit and call the 64-bit
division routine); launch bounds of 256 threads x 2 blocks cap registers at 128, so two blocks
(16 warps) are resident per SM.

Split-K: when M x N has too few tiles to fill the GPU (backward-filter of a convolution reduces
over batch x height x width), blockIdx.z also splits K into `splits` ranges of a multiple of
TILE_K. Each range writes its raw partial sums to a workspace (groups*splits, M, N); a second
kernel adds the partials in a fixed order and calls `store`, so results are deterministic run to run.
"""

import math
from typing import Callable, NamedTuple

import numpy as np
from numba import config, cuda, float32, int32, uint32

from ._vector import SHARED_ALIGNMENT, load4, udiv

TILE_M = 128
TILE_N = 128
TILE_K = 16
THREAD_M = 8  # rows of C per thread: two groups of 4, 64 rows apart
THREAD_N = 8  # columns of C per thread: likewise
THREADS = 256
LOADS = TILE_M * TILE_K // THREADS  # elements of each tile one thread copies per K step (8)
assert TILE_M == TILE_N == 128 and TILE_K == 16 and THREADS == 256  # the copy patterns below assume these
TILE_ROW = 132  # TILE_M + 4: shared-memory shapes must be literals, not expressions
TILE_SIZE = 2112  # TILE_K * TILE_ROW
BUFFERS_SIZE = 4224  # two buffers
assert TILE_SIZE == TILE_K * TILE_ROW and BUFFERS_SIZE == 2 * TILE_SIZE and TILE_ROW % 4 == 0

# A gather column beyond the matrix: its window test fails for every k (padding entries too).
OUTSIDE = 0x20000000  # (OUTSIDE + OUTSIDE still fits int32: no overflow in the simulator)

# With fewer tiles than this, K is split (about two blocks per SM on an H100/H200 class GPU).
TARGET_BLOCKS = 264
MIN_K_PER_SPLIT = 128

REDUCE_THREADS = 256

# 256 threads x 2 resident blocks: ptxas keeps to 128 registers. The simulator takes no bounds.
_LAUNCH_BOUNDS = {} if config.ENABLE_CUDASIM else {"launch_bounds": (THREADS, 2)}


class Operand(NamedTuple):
    """How the tiled kernel finds element (i, k) of A (i = m) or B (i = n); see the module docstring."""

    mode: str
    locate: Callable
    step: Callable = None  # "rows"/"table_rows": the distance between rows i and i+1; "cols": between k and k+1
    limits: Callable = None  # "gather": (height, width) the window coordinates must stay below
    # "gather": read a table row as one 128-bit load (fewer instructions) or as three (4 fewer
    # registers while the loads are in flight: what keeps ptxas within 128 without spilling
    # when the other operand is a "table_rows" one)
    vector_table: bool = True


@cuda.jit(device=True, inline=True)
def _no_limits(geom):
    return int32(0), int32(0)


def _make_copier(operand):
    """Device functions copying one TILE_K x 128 tile of an operand into a shared buffer.

    "rows"/"table_rows" (k contiguous): consecutive threads take consecutive k, so a thread keeps
    one k (kk = tid % 16) and copies rows tid//16 + 16e, e < LOADS: one table read per tile.
    "cols"/"gather" (i contiguous): consecutive threads take consecutive i, so a thread keeps one
    i (tid % 128) and copies k = tid//128 + 2e. Either way the reads of a warp are coalesced.
    The copy is split into `fetch` (global memory to registers, issued a tile ahead) and `stash`
    (registers to shared memory).
    """
    mode = operand.mode
    assert mode in ("rows", "table_rows", "cols", "gather")
    k_fastest = mode in ("rows", "table_rows")
    tabled = mode == "table_rows"
    by_columns = mode == "cols"
    vector_table = operand.vector_table
    locate = operand.locate
    step_of = operand.step
    limits = operand.limits if operand.limits is not None else _no_limits

    @cuda.jit(device=True, inline=True)
    def start(geom, g, tid, i0, extent):
        """(base, h, w) of this thread's fixed index; for k_fastest modes h is the number of rows
        left from this thread's first row (element e exists iff 16e < h)."""
        if k_fastest:
            i = int32(i0 + (tid >> 4))
            base, unused_h, unused_w = locate(geom, g, int32(min(i, extent - 1)))
            return base, int32(extent - i), int32(0)
        i = int32(i0 + (tid & 127))
        if i < extent:
            return locate(geom, g, i)
        return int32(0), int32(OUTSIDE), int32(OUTSIDE)

    @cuda.jit(device=True, inline=True)
    def fetch(staged, src, table, geom, tid, base, h, w, k0, k_end):
        """This thread's LOADS elements of the tile at k0, from global memory into registers."""
        if k_fastest:
            k = int32(k0 + (tid & 15))
            if tabled:
                offset = int32(base + table[k])  # tables are padded to a TILE_K multiple: always in range
            else:
                offset = int32(base + k)
            row_step = uint32(step_of(geom) * 16)
            rows = h if k < k_end else int32(0)  # rows to read: none past the end of K
            for e in range(LOADS):
                value = float32(0.0)
                if int32(e * 16) < rows:
                    value = src[uint32(offset) + uint32(e) * row_step]
                staged[e] = value
        elif by_columns:
            k = int32(k0 + (tid >> 7))
            k_step = step_of(geom)
            offset = int32(base + k * k_step)
            k_left = int32(k_end - k) if h == 0 else int32(0)  # k to read: none in a column past the end
            for e in range(LOADS):
                value = float32(0.0)
                if int32(2 * e) < k_left:
                    value = src[uint32(offset) + uint32(2 * e) * uint32(k_step)]
                staged[e] = value
        else:
            k = int32(k0 + (tid >> 7))
            height, width = limits(geom)
            for e in range(LOADS):
                row = uint32((k + int32(2 * e)) * 4)
                if vector_table:
                    offset, dh, dw, unused = load4(table, row)
                else:
                    offset, dh, dw = table[row], table[row + uint32(1)], table[row + uint32(2)]
                value = float32(0.0)
                if (uint32(h + dh) < uint32(height)) & (uint32(w + dw) < uint32(width)):  # no branch
                    value = src[uint32(base + offset)]
                staged[e] = value

    @cuda.jit(device=True, inline=True)
    def stash(tile, buffer, staged, tid):
        """The fetched elements, from registers into shared buffer `buffer` (0 or TILE_SIZE)."""
        if k_fastest:
            first = uint32(buffer + (tid & 15) * TILE_ROW + (tid >> 4))
            for e in range(LOADS):
                tile[first + uint32(16 * e)] = staged[e]  # a 64-bit sum: ptxas folds the constant into STS
        else:
            first = uint32(buffer + (tid >> 7) * TILE_ROW + (tid & 127))
            for e in range(LOADS):
                tile[first + uint32(2 * e * TILE_ROW)] = staged[e]

    return start, fetch, stash


@cuda.jit(device=True, inline=True)
def _multiply_step(acc, a_frag, b_frag, a_tile, b_tile, a_at, b_at):
    """One k of the 8 x 8 outer product: four 128-bit shared loads, 64 FFMA."""
    a_frag[0], a_frag[1], a_frag[2], a_frag[3] = load4(a_tile, a_at)
    a_frag[4], a_frag[5], a_frag[6], a_frag[7] = load4(a_tile, a_at + uint32(64))
    b_frag[0], b_frag[1], b_frag[2], b_frag[3] = load4(b_tile, b_at)
    b_frag[4], b_frag[5], b_frag[6], b_frag[7] = load4(b_tile, b_at + uint32(64))
    for i in range(THREAD_M):
        for j in range(THREAD_N):
            acc[i, j] += a_frag[i] * b_frag[j]


@cuda.jit(device=True, inline=True)
def _multiply_four(acc, a_frag, b_frag, a_tile, b_tile, a_at, b_at):
    _multiply_step(acc, a_frag, b_frag, a_tile, b_tile, a_at, b_at)
    _multiply_step(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(TILE_ROW), b_at + uint32(TILE_ROW))
    _multiply_step(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(2 * TILE_ROW), b_at + uint32(2 * TILE_ROW))
    _multiply_step(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(3 * TILE_ROW), b_at + uint32(3 * TILE_ROW))


def make_tiled_matmul(a_operand, b_operand, c_row, c_col, store, blocks_per_sm=2):
    """Build (tiled_kernel, reduce_kernel) for two Operands and C's addressing and store.

    blocks_per_sm = 2 caps ptxas at 128 registers; 1 lets it use more (one block, 8 warps per SM)
    where 128 would spill.
    """
    bounds = {"launch_bounds": (THREADS, blocks_per_sm)} if _LAUNCH_BOUNDS else {}
    start_a, fetch_a, stash_a = _make_copier(a_operand)
    start_b, fetch_b, stash_b = _make_copier(b_operand)

    @cuda.jit(device=True, inline=True)
    def put(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n, col, value):
        """C[g, m, n] (or split z's partial sum of it), when m is inside."""
        if m < M:
            if splits == 1:
                store(c, bias, geom, g, m, n, int32(c_row(geom, g, m) + col), value, alpha, beta)
            else:
                partial[uint32((z * M + m) * N + n)] = value

    @cuda.jit(device=True, inline=True)
    def put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n, v0, v1, v2, v3, v4, v5, v6, v7):
        """This thread's eight values of column n: rows m + {0, 1, 2, 3, 64, 65, 66, 67}."""
        if n < N:
            col = int32(c_col(geom, g, n))
            put(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n, col, v0)
            put(c, bias, partial, geom, g, z, int32(m + 1), M, N, splits, alpha, beta, n, col, v1)
            put(c, bias, partial, geom, g, z, int32(m + 2), M, N, splits, alpha, beta, n, col, v2)
            put(c, bias, partial, geom, g, z, int32(m + 3), M, N, splits, alpha, beta, n, col, v3)
            put(c, bias, partial, geom, g, z, int32(m + 64), M, N, splits, alpha, beta, n, col, v4)
            put(c, bias, partial, geom, g, z, int32(m + 65), M, N, splits, alpha, beta, n, col, v5)
            put(c, bias, partial, geom, g, z, int32(m + 66), M, N, splits, alpha, beta, n, col, v6)
            put(c, bias, partial, geom, g, z, int32(m + 67), M, N, splits, alpha, beta, n, col, v7)

    @cuda.jit(fastmath=True, **bounds)
    def tiled_kernel(c, a, b, a_table, b_table, bias, geom, M, N, K, k_per_split, splits, alpha, beta, partial):
        a_tile = cuda.shared.array(BUFFERS_SIZE, float32, alignment=SHARED_ALIGNMENT)
        b_tile = cuda.shared.array(BUFFERS_SIZE, float32, alignment=SHARED_ALIGNMENT)
        acc = cuda.local.array((THREAD_M, THREAD_N), float32)
        a_frag = cuda.local.array(THREAD_M, float32)
        b_frag = cuda.local.array(THREAD_N, float32)
        a_staged = cuda.local.array(LOADS, float32)
        b_staged = cuda.local.array(LOADS, float32)

        tid = int32(cuda.threadIdx.x)
        tx = int32(tid & 15)
        ty = int32(tid >> 4)
        m0 = int32(cuda.blockIdx.y * TILE_M)
        n0 = int32(cuda.blockIdx.x * TILE_N)
        z = int32(cuda.blockIdx.z)
        g = udiv(z, splits)
        k_begin = int32((z - g * splits) * k_per_split)
        k_end = int32(min(K, k_begin + k_per_split))

        for i in range(THREAD_M):
            for j in range(THREAD_N):
                acc[i, j] = float32(0.0)

        a_base, a_h, a_w = start_a(geom, g, tid, m0, M)
        b_base, b_h, b_w = start_b(geom, g, tid, n0, N)
        fetch_a(a_staged, a, a_table, geom, tid, a_base, a_h, a_w, k_begin, k_end)
        fetch_b(b_staged, b, b_table, geom, tid, b_base, b_h, b_w, k_begin, k_end)
        stash_a(a_tile, int32(0), a_staged, tid)
        stash_b(b_tile, int32(0), b_staged, tid)
        cuda.syncthreads()

        buffer = int32(0)
        k0 = k_begin
        while k0 < k_end:
            k_next = int32(k0 + TILE_K)
            # Issue the next tile's global loads now: they complete while this tile is multiplied.
            # After the last tile this reads nothing (every element is past k_end) and stashes
            # zeros into the idle buffer: cheaper than a branch around it.
            fetch_a(a_staged, a, a_table, geom, tid, a_base, a_h, a_w, k_next, k_end)
            fetch_b(b_staged, b, b_table, geom, tid, b_base, b_h, b_w, k_next, k_end)
            a_at = uint32(buffer + ty * 4)
            b_at = uint32(buffer + tx * 4)
            # The TILE_K steps written out (Numba cannot ask LLVM to unroll): no loop counter.
            _multiply_four(acc, a_frag, b_frag, a_tile, b_tile, a_at, b_at)
            _multiply_four(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(4 * TILE_ROW), b_at + uint32(4 * TILE_ROW))
            _multiply_four(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(8 * TILE_ROW), b_at + uint32(8 * TILE_ROW))
            _multiply_four(acc, a_frag, b_frag, a_tile, b_tile, a_at + uint32(12 * TILE_ROW), b_at + uint32(12 * TILE_ROW))
            buffer = int32(TILE_SIZE - buffer)
            stash_a(a_tile, buffer, a_staged, tid)
            stash_b(b_tile, buffer, b_staged, tid)
            # The one barrier per tile (double buffering: see the module docstring).
            cuda.syncthreads()
            k0 = k_next

        # Every acc index a constant (a loop here would put acc in local memory): column by column.
        m = int32(m0 + ty * 4)
        n = int32(n0 + tx * 4)
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n, acc[0, 0], acc[1, 0], acc[2, 0], acc[3, 0], acc[4, 0], acc[5, 0], acc[6, 0], acc[7, 0])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 1, acc[0, 1], acc[1, 1], acc[2, 1], acc[3, 1], acc[4, 1], acc[5, 1], acc[6, 1], acc[7, 1])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 2, acc[0, 2], acc[1, 2], acc[2, 2], acc[3, 2], acc[4, 2], acc[5, 2], acc[6, 2], acc[7, 2])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 3, acc[0, 3], acc[1, 3], acc[2, 3], acc[3, 3], acc[4, 3], acc[5, 3], acc[6, 3], acc[7, 3])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 64, acc[0, 4], acc[1, 4], acc[2, 4], acc[3, 4], acc[4, 4], acc[5, 4], acc[6, 4], acc[7, 4])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 65, acc[0, 5], acc[1, 5], acc[2, 5], acc[3, 5], acc[4, 5], acc[5, 5], acc[6, 5], acc[7, 5])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 66, acc[0, 6], acc[1, 6], acc[2, 6], acc[3, 6], acc[4, 6], acc[5, 6], acc[6, 6], acc[7, 6])
        put_column(c, bias, partial, geom, g, z, m, M, N, splits, alpha, beta, n + 67, acc[0, 7], acc[1, 7], acc[2, 7], acc[3, 7], acc[4, 7], acc[5, 7], acc[6, 7], acc[7, 7])

    @cuda.jit(fastmath=True)
    def reduce_kernel(c, bias, geom, M, N, splits, alpha, beta, partial):
        flat = int32(cuda.blockIdx.x) * int32(REDUCE_THREADS) + int32(cuda.threadIdx.x)
        g = int32(cuda.blockIdx.y)
        plane = int32(M * N)
        if flat >= plane:
            return
        m = udiv(flat, N)
        n = int32(flat - m * N)
        at = int32(g * splits * plane + flat)
        total = float32(0.0)
        s = int32(0)
        while s < splits:
            total += partial[uint32(at)]
            at = int32(at + plane)
            s = int32(s + 1)
        store(c, bias, geom, g, m, n, int32(c_row(geom, g, m) + c_col(geom, g, n)), total, alpha, beta)

    return tiled_kernel, reduce_kernel


_SM_COUNT = []
_WORKSPACE = []
_NO_TABLE = []


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


def no_table():
    """The table argument of an operand that has none (never read)."""
    if not _NO_TABLE:
        _NO_TABLE.append(cuda.to_device(np.zeros(4, np.int32)))
    return _NO_TABLE[0]


_ZERO_BIAS = {}


def bias_or_zeros(b, count):
    """`b`, or (when None) a cached device array of `count` zeros: stores always get a bias array."""
    if b is not None:
        return b
    if count not in _ZERO_BIAS:
        _ZERO_BIAS[count] = cuda.to_device(np.zeros(count, dtype=np.float32))
    return _ZERO_BIAS[count]


def padded_k(K):
    """Table length: K rounded up to whole K tiles, and one more tile (read after the last one)."""
    return (math.ceil(K / TILE_K) + 1) * TILE_K


def choose_splits(M, N, K, groups):
    """How many ranges to split K into so that the launch fills the GPU (1 when it already does)."""
    tiles = math.ceil(M / TILE_M) * math.ceil(N / TILE_N) * groups
    wanted = math.ceil(2 * _sm_count() / tiles)
    most = max(1, K // MIN_K_PER_SPLIT)
    return max(1, min(wanted, most))


def _flat(array):
    return array.reshape(array.size)


def launch(kernels, c, a, b, bias, geom, M, N, K, groups, alpha=1.0, beta=0.0, splits=None, a_table=None, b_table=None):
    """Run C = A @ B per group through `kernels` (from make_tiled_matmul); no host synchronisation.

    c, a, b, bias: C-contiguous device arrays of any shape (the kernels index them flat, in int32);
    a_table / b_table: the int32 device tables of "table_rows" / "gather" operands.
    """
    for name, array in (("c", c), ("a", a), ("b", b)):
        if array.size >= 2**31:
            raise ValueError(f"{name}: {array.size} elements, the CUDA kernels index in int32 (at most 2**31 - 1)")
    tiled_kernel, reduce_kernel = kernels
    if splits is None:
        splits = choose_splits(M, N, K, groups)
    k_per_split = math.ceil(math.ceil(K / splits) / TILE_K) * TILE_K
    splits = math.ceil(K / k_per_split)
    geom = tuple(np.int32(v) for v in geom)
    c, a, b, bias = _flat(c), _flat(a), _flat(b), _flat(bias)
    a_table = no_table() if a_table is None else a_table
    b_table = no_table() if b_table is None else b_table
    partial = _workspace(groups * splits * M * N if splits > 1 else 1)
    grid = (math.ceil(N / TILE_N), math.ceil(M / TILE_M), groups * splits)
    sizes = np.int32(M), np.int32(N), np.int32(K), np.int32(k_per_split), np.int32(splits)
    tiled_kernel[grid, THREADS](c, a, b, a_table, b_table, bias, geom, *sizes, np.float32(alpha), np.float32(beta), partial)
    if splits > 1:
        reduce_grid = (math.ceil(M * N / REDUCE_THREADS), groups)
        reduce_kernel[reduce_grid, REDUCE_THREADS](
            c, bias, geom, np.int32(M), np.int32(N), np.int32(splits), np.float32(alpha), np.float32(beta), partial
        )
