"""Softmax cross-entropy in float64 loops."""

import math

import numpy as np


def softmax_cross_entropy(logits, labels):
    """(mean loss, probs) with probs = softmax of each row, computed max-subtracted in float64."""
    N, K = logits.shape
    probs = np.zeros((N, K))
    total_loss = 0.0
    for i in range(N):
        m = max(float(v) for v in logits[i])
        exps = [math.exp(float(v) - m) for v in logits[i]]
        total = sum(exps)
        for j in range(K):
            probs[i, j] = exps[j] / total
        total_loss += math.log(total) - (float(logits[i, labels[i]]) - m)
    return total_loss / N, probs
