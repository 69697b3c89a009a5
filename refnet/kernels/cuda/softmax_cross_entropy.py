"""Softmax + cross-entropy loss on the GPU, one block per row (example).

    m           = max_j logits[i, j]                         (subtracted so exp never overflows)
    probs[i]    = exp(logits[i] - m) / sum_j exp(logits[i, j] - m)
    row_loss[i] = log(sum_j exp(logits[i, j] - m)) - (logits[i, labels[i]] - m)
    backward:     dlogits[i, j] = (probs[i, j] - [j == labels[i]]) / N

The loss is the mean of row_loss over the batch; the op layer copies the N losses to the host and
takes that mean (the one device-to-host transfer of a training step).

Layout: logits, probs, dlogits (N, K) float32; labels (N,) int32 in [0, K); row_loss (N,)
float32. C-contiguous device arrays. Device labels are not copied to the host to be checked (that
would synchronise twice per training step): a label outside [0, K) makes its row_loss (and its
dlogits row) NaN, and the op layer, which reads the losses back anyway, raises the ValueError.

Forward: the block's threads stride over the row (coalesced) and combine their maxima and sums
by a tree reduction in shared memory, in a fixed order, so results are deterministic.
Backward: one thread per element.
"""

import math

import numpy as np
from numba import cuda, float32, int32

from ._grid import elementwise_grid
from ._reduce import THREADS, block_reduce

ROW_THREADS = THREADS


@cuda.jit
def _softmax_cross_entropy_rows(probs, row_loss, logits, labels):
    values = cuda.shared.array(ROW_THREADS, float32)
    i = cuda.blockIdx.x
    tid = int32(cuda.threadIdx.x)
    K = logits.shape[1]

    m = logits[i, 0]
    for j in range(tid, K, ROW_THREADS):
        m = max(m, logits[i, j])
    values[tid] = m
    cuda.syncthreads()
    m = block_reduce(values, tid, True)
    cuda.syncthreads()  # everyone has read values[0] before it is overwritten

    total = float32(0.0)
    for j in range(tid, K, ROW_THREADS):
        e = math.exp(logits[i, j] - m)
        probs[i, j] = e
        total += e
    values[tid] = total
    cuda.syncthreads()
    total = block_reduce(values, tid, False)

    inv_total = float32(1.0) / total
    for j in range(tid, K, ROW_THREADS):
        probs[i, j] *= inv_total
    if tid == 0:
        label = labels[i]
        if 0 <= label < K:
            row_loss[i] = math.log(total) - (logits[i, label] - m)
        else:
            row_loss[i] = math.nan  # the op layer turns this into a ValueError naming the label


@cuda.jit
def _softmax_cross_entropy_backward_flat(dlogits, probs, labels, inv_n):
    K = probs.shape[1]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, probs.size, step):
        i = int32(flat // K)
        j = int32(flat - i * K)
        p = probs[i, j]
        label = labels[i]
        if j == label:
            p -= float32(1.0)
        if label < 0 or label >= K:
            p = math.nan  # an invalid label poisons its row rather than reading out of bounds
        dlogits[i, j] = p * inv_n


def softmax_cross_entropy(probs, row_loss, logits, labels):
    """probs (N, K) and per-example losses row_loss (N,) from logits (N, K) and labels (N,)."""
    _softmax_cross_entropy_rows[logits.shape[0], ROW_THREADS](probs, row_loss, logits, labels)


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (N, K) = (probs - onehot(labels)) / N."""
    blocks, threads = elementwise_grid(probs.size)
    inv_n = np.float32(1.0) / np.float32(probs.shape[0])
    _softmax_cross_entropy_backward_flat[blocks, threads](dlogits, probs, labels, inv_n)
