"""AlexNet's training-mode forward pass in float64 numpy: the oracle of `refnet gradcheck`.

This is a test instrument, not refnet's compute path: it uses numpy's vectorised float64
arithmetic (matmul included, so BLAS) because its only job is to evaluate the same function as
refnet's float32 kernels with ~1e-16 rounding, fast enough for a few hundred evaluations. The
float32 network never calls it. The graph is refnet.model's layer list, layer for layer:

    conv     y[n,k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n, g*Cg+c, p*stride-pad+r, q*stride-pad+s]
    relu     y = max(x, 0)                                  (records x > 0)
    maxpool  y = max over the 3x3 stride-2 window           (records the winner, flat h*W+w,
                                                             first maximum in row-major order)
    lrn      y = x / (k + alpha * sum_{|c'-c|<=n/2} x[c']^2)^beta   (alpha not divided by n)
    linear   y = x w^T + b                                  (x flattened NCHW)
    dropout  y = x * mask                                   (the float32 run's mask: kept units
                                                             pass unscaled, the paper's rule)
    loss     mean over the batch of logsumexp(z) - z[label]

`forward_from(i, ...)` restarts at layer i from cached inputs, so a perturbation of layer i's
parameters recomputes only layers i and after. Every call returns the loss and the "pattern"
(ReLU signs and pooling winners) of the layers it ran, which the checker compares with the base
point's to find perturbations that cross a kink.
"""

import numpy as np

from .model import LRN_ALPHA, LRN_BETA, LRN_K


def conv2d(x, w, b, stride, pad, groups):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p_out, q_out = (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - s) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    # cols[n, c, r, s, p, q] = xp[n, c, p*stride + r, q*stride + s]
    cols = np.empty((n, c, r, s, p_out, q_out))
    for i in range(r):
        for j in range(s):
            cols[:, :, i, j] = xp[:, :, i : i + stride * p_out : stride, j : j + stride * q_out : stride]
    kg = k // groups
    y = np.empty((n, k, p_out * q_out))
    for g in range(groups):
        group_cols = cols[:, g * cg : (g + 1) * cg].reshape(n, cg * r * s, p_out * q_out)
        y[:, g * kg : (g + 1) * kg] = np.matmul(w[g * kg : (g + 1) * kg].reshape(kg, cg * r * s), group_cols)
    return y.reshape(n, k, p_out, q_out) + b[None, :, None, None]


def maxpool2d(x, size, stride):
    """(y, winner): winner is the flat index h*W + w of the first maximum in row-major window order."""
    n, c, h, w = x.shape
    p_out, q_out = (h - size) // stride + 1, (w - size) // stride + 1
    best = np.full((n, c, p_out, q_out), -np.inf)
    winner = np.zeros((n, c, p_out, q_out), dtype=np.int64)
    rows = np.arange(p_out)[:, None] * stride
    cols = np.arange(q_out)[None, :] * stride
    for i in range(size):
        for j in range(size):
            candidate = x[:, :, i : i + stride * p_out : stride, j : j + stride * q_out : stride]
            better = candidate > best  # strictly greater: ties keep the earlier position
            best = np.where(better, candidate, best)
            winner = np.where(better, (rows + i) * w + (cols + j), winner)
    return best, winner


def lrn(x, size):
    half = size // 2
    squares = x * x
    window = np.zeros_like(x)
    channels = x.shape[1]
    for c in range(channels):
        window[:, c] = squares[:, max(0, c - half) : min(channels, c + half + 1)].sum(axis=1)
    return x * (LRN_K + LRN_ALPHA * window) ** (-LRN_BETA)


def mean_cross_entropy(logits, labels):
    top = logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - logits[np.arange(len(labels)), labels]))


class Float64AlexNet:
    """The float64 twin of one refnet.model.AlexNet at one point: its layers, float64 copies of its
    parameters, the input, the labels and the dropout masks of the float32 run."""

    def __init__(self, layers, params, x, labels, masks):
        self.layers = layers
        self.params = {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}
        self.x = np.asarray(x, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.masks = {i: np.asarray(m, dtype=np.float64) for i, m in masks.items()}
        self.inputs = None  # inputs[i]: layer i's input at the base point (set by run_base)

    def run_base(self):
        """(loss, pattern) at the base point, caching every layer's input for forward_from."""
        self.inputs = []
        return self._run(0, self.x, self.params, keep_inputs=True)

    def forward_from(self, start, params=None, x=None):
        """(loss, pattern) with layer `start` onwards recomputed from the cached input of layer
        `start` (or from `x` when start == 0), with `params` in place of the base parameters."""
        src = self.x if x is None and start == 0 else (x if start == 0 else self.inputs[start])
        return self._run(start, src, params or self.params, keep_inputs=False)

    def _run(self, start, a, params, keep_inputs):
        pattern = {}
        for i in range(start, len(self.layers)):
            layer = self.layers[i]
            if layer.kind == "linear" and a.ndim > 2:
                a = a.reshape(a.shape[0], -1)
            if keep_inputs:
                self.inputs.append(a)
            if layer.kind == "conv":
                a = conv2d(a, params[f"{layer.name}.weight"], params[f"{layer.name}.bias"],
                           layer.stride, layer.pad, layer.groups)  # fmt: skip
            elif layer.kind == "linear":
                # w (out, in) times a^T: OpenBLAS runs this orientation several times faster than a w^T
                a = np.matmul(params[f"{layer.name}.weight"], a.T).T + params[f"{layer.name}.bias"]
            elif layer.kind == "relu":
                pattern[i] = a > 0
                a = np.maximum(a, 0.0)
            elif layer.kind == "maxpool":
                a, pattern[i] = maxpool2d(a, layer.size, layer.stride)
            elif layer.kind == "lrn":
                a = lrn(a, layer.size)
            elif layer.kind == "dropout":
                a = a * self.masks[i].reshape(a.shape)
            else:
                raise AssertionError(f"unknown layer kind {layer.kind!r}")
        return mean_cross_entropy(a, self.labels), pattern
