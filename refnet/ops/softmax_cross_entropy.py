"""Softmax + cross-entropy: loss = mean over the batch of -log softmax(logits)[label].

The kernel writes per-example losses (float32) and the probabilities; the mean is taken here in
float64 (math.fsum: exact, independent of order) and returned as a Python float.
"""

import importlib
import math

import numpy as np

from ..device import backend_of, is_device_array
from ._checks import check_array, check_same_backend, output_or_new


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.softmax_cross_entropy")


def _host(a):
    return a.copy_to_host() if is_device_array(a) else a


def _check_labels(labels, n, num_classes):
    """Shape and dtype always; the range here for host labels. Device labels are range-checked by
    the CUDA kernel (an invalid label makes its row's loss NaN), so a training step needs no extra
    device-to-host copy; `_raise_if_bad_labels` then names the label."""
    check_array("labels", labels, dtype=np.int32, shape=(n,))
    if not is_device_array(labels):
        _raise_if_bad_labels(labels, num_classes)


def _raise_if_bad_labels(labels, num_classes):
    host = _host(labels)
    bad = np.flatnonzero((host < 0) | (host >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"labels: expected values in [0, {num_classes}), got labels[{i}] = {int(host[i])}"
            f" ({bad.size} out of range)"
        )


def softmax_cross_entropy(logits, labels, out=None, row_loss=None):
    """(loss, probs) for logits (N, K) float32 and labels (N,) int32 in [0, K).

    loss: Python float, the mean over the batch of -log probs[i, labels[i]]. probs: (N, K) float32.
    `out`: the probs array to write; `row_loss`: an optional (N,) float32 workspace for the
    per-example losses (so a training loop allocates nothing).
    """
    check_array("logits", logits, ndim=2)
    n, num_classes = logits.shape
    if n < 1 or num_classes < 1:
        raise ValueError(f"logits: expected at least one row and one class, got shape {tuple(logits.shape)}")
    _check_labels(labels, n, num_classes)
    check_same_backend(logits=logits, labels=labels, out=out, row_loss=row_loss)
    probs = output_or_new("out", out, (n, num_classes), np.float32, like=logits)
    row_loss = output_or_new("row_loss", row_loss, (n,), np.float32, like=logits)
    _kernels(logits).softmax_cross_entropy(probs, row_loss, logits, labels)
    losses = _host(row_loss)
    if is_device_array(labels) and np.isnan(losses).any():
        _raise_if_bad_labels(labels, num_classes)
    return math.fsum(losses.tolist()) / n, probs


def softmax_cross_entropy_backward(probs, labels, out=None):
    """dlogits (N, K) = (probs - onehot(labels)) / N. `out`: the dlogits array to write.
    Device labels out of range make their dlogits row NaN (checked on the host only in the forward)."""
    check_array("probs", probs, ndim=2)
    n, num_classes = probs.shape
    _check_labels(labels, n, num_classes)
    check_same_backend(probs=probs, labels=labels, out=out)
    dlogits = output_or_new("out", out, (n, num_classes), np.float32, like=probs)
    _kernels(probs).softmax_cross_entropy_backward(dlogits, probs, labels)
    return dlogits

