"""Block-wide tree reductions, and the per-channel sums of bias gradients built on them:

    channel_sum:  total[k] = sum_{n, l} values[n, k, l]

Layout: values (N, K, L) float32 (a conv's dy as (N, K, P*Q), or a linear layer's dy (N, K) as
(N, K, 1)); total (K,) float32. C-contiguous device arrays.

One block per channel (blocks stride over the channels): its threads stride over (n, l) (coalesced along l), then add their partial
sums by a tree reduction in shared memory, in a fixed order, so the sum is deterministic.
softmax_cross_entropy uses the same tree (`block_reduce`) for its row maxima and sums.
"""

from numba import cuda, float32, int32

from ._grid import MAX_BLOCKS

THREADS = 256  # a power of two, for the tree


@cuda.jit(device=True, inline=True)
def block_reduce(values, tid, take_max):
    """values: shared (THREADS,), one entry per thread of a THREADS-thread block, written and
    synchronised by the caller. Returns the max (take_max) or sum of all entries, to every thread;
    the caller synchronises again before it next writes `values`."""
    width = THREADS // 2
    while width > 0:
        if tid < width:
            if take_max:
                values[tid] = max(values[tid], values[tid + width])
            else:
                values[tid] += values[tid + width]
        cuda.syncthreads()
        width //= 2
    return values[0]


@cuda.jit
def _channel_sum_kernel(total, values):
    partial = cuda.shared.array(THREADS, float32)
    tid = int32(cuda.threadIdx.x)
    N, K, L = values.shape[0], values.shape[1], values.shape[2]
    for k in range(cuda.blockIdx.x, K, cuda.gridDim.x):  # blocks stride over the channels
        s = float32(0.0)
        for flat in range(tid, N * L, THREADS):
            n = flat // L
            s += values[n, k, flat - n * L]
        partial[tid] = s
        cuda.syncthreads()
        s = block_reduce(partial, tid, False)
        if tid == 0:
            total[k] = s
        cuda.syncthreads()  # everyone has read partial[0] before the next channel overwrites it


def channel_sum(total, values):
    """total (K,) = values (N, K, L) summed over n and l."""
    _channel_sum_kernel[min(values.shape[1], MAX_BLOCKS), THREADS](total, values)
