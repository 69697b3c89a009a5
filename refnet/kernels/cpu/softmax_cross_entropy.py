"""Softmax + cross-entropy loss on the CPU, one row (example) per thread.

    m         = max_j logits[i, j]                          (subtracted so exp never overflows)
    probs[i]  = exp(logits[i] - m) / sum_j exp(logits[i, j] - m)
    row_loss[i] = -log probs[i, labels[i]] = log(sum_j exp(logits[i, j] - m)) - (logits[i, labels[i]] - m)
    backward: dlogits[i, j] = (probs[i, j] - [j == labels[i]]) / N

The loss is the mean of row_loss over the batch; the op layer takes that mean.

Layout: logits, probs, dlogits (N, K) float32; labels (N,) int32 with values in [0, K)
(checked by the op layer); row_loss (N,) float32. All C-contiguous.
"""

import math

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def _softmax_cross_entropy_rows(probs, row_loss, logits, labels):
    N, K = logits.shape
    for i in prange(N):
        row = logits[i]
        p_row = probs[i]
        m = row[0]
        for j in range(1, K):
            m = max(m, row[j])
        total = np.float32(0.0)
        for j in range(K):
            e = math.exp(row[j] - m)
            p_row[j] = e
            total += e
        inv_total = np.float32(1.0) / total
        for j in range(K):
            p_row[j] *= inv_total
        row_loss[i] = math.log(total) - (row[labels[i]] - m)


@njit(parallel=True, cache=True, nogil=True)
def _softmax_cross_entropy_backward_rows(dlogits, probs, labels):
    N, K = probs.shape
    inv_n = np.float32(1.0) / np.float32(N)
    for i in prange(N):
        for j in range(K):
            dlogits[i, j] = probs[i, j] * inv_n
        dlogits[i, labels[i]] = (probs[i, labels[i]] - np.float32(1.0)) * inv_n


def softmax_cross_entropy(probs, row_loss, logits, labels):
    """probs (N, K) and per-example losses row_loss (N,) from logits (N, K) and labels (N,)."""
    _softmax_cross_entropy_rows(probs, row_loss, logits, labels)


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (N, K) = (probs - onehot(labels)) / N."""
    _softmax_cross_entropy_backward_rows(dlogits, probs, labels)
