"""AlexNet's training step as passes, each the list of kernel launches it makes at batch size N.

A pass is one op call of a training step as refnet.model runs it (conv2 forward, conv2 backward
data, ..., the SGD update), captured with `capture.capturing` on zero-filled numpy arrays of the
layer's shapes: the launchers pick grids, split-K factors and helper kernels exactly as on a GPU.
Every launch a pass makes belongs to it (a split-K reduction, a pre-pass or table kernel), so the
analysis charges that work to the pass.

conv and linear backward make one launcher call for the data gradient, the weight gradient and the
bias gradient; they are told apart by calling the launcher with and without each output:
    backward filter = launches of backward(dx=None, dw, db=None)
    backward data   = launches of backward(dx, dw, db=None), less the trailing filter ones
    bias gradient   = launches of backward(dx=None, dw, db), less the leading filter ones

Matrix passes ("matmul") are counted per K tile of their tiled kernel; the rest ("memory") are
timed at DRAM speed from the bytes their launches move. The tiled kernel's geometry (what one K
tile is, how many a block runs) is read from refnet.kernels.cuda._tiled here and nowhere else.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import capture

VARIANT_GROUPS = {"seed": 1, "paper": 2}

# Arrays a kernel both reads and writes (in place): their bytes count twice.
READ_AND_WRITTEN = {
    "_sgd_momentum_update_flat": ("w", "v"),
    "_maxpool_backward_kernel": ("dx_planes",),
    "_softmax_cross_entropy_rows": ("probs",),
}


@dataclass
class Pass:
    name: str  # "conv2 forward"
    layer: str
    kind: str  # "matmul" | "memory"
    launches: list
    flops: int = 0  # useful floating-point operations (2 per multiply-add); matmul passes
    in_step: bool = True  # run by a training step (conv1's data gradient is not)
    variant: str = "seed"
    shape: str = ""  # the product or array it works on, for the table


@dataclass(frozen=True)
class TileGeometry:
    """What refnet's tiled matrix kernel does per K tile (from `_tiled`)."""

    ffma_per_thread: int  # FFMAs one thread issues per K tile
    tile_k: int

    @classmethod
    def current(cls):
        from ..kernels.cuda import _tiled

        return cls(_tiled.TILE_M * _tiled.TILE_N * _tiled.TILE_K // _tiled.THREADS, _tiled.TILE_K)

    def k_tiles_per_block(self, launch):
        """K tiles a block of the tiled kernel runs, averaged over the K splits."""
        K, per_split, splits = (int(launch.args[k]) for k in ("K", "k_per_split", "splits"))
        tiles = sum(math.ceil((min(K, (s + 1) * per_split) - s * per_split) / self.tile_k) for s in range(splits))
        return tiles / splits


def bytes_moved(launch):
    """Bytes a launch reads and writes, each array argument once (twice if read and written)."""
    twice = READ_AND_WRITTEN.get(launch.name, ())
    return sum(a.nbytes * (2 if name in twice else 1) for name, a in launch.args.items() if isinstance(a, np.ndarray))


def _captured(call):
    with capture.capturing() as launches:
        call()
    return launches


def _zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _backward_passes(layer, backward, dx, dw, db, flops, shape_text, variant, in_step_data):
    name = layer.name
    filter_only = _captured(lambda: backward(None, dw, None))
    with_data = _captured(lambda: backward(dx, dw, None))
    with_bias = _captured(lambda: backward(None, dw, db))
    weights = "backward filter" if layer.kind == "conv" else "backward weights"
    return [
        Pass(f"{name} backward data", name, "matmul", with_data[: len(with_data) - len(filter_only)], flops,
             in_step_data, variant, shape_text),
        Pass(f"{name} {weights}", name, "matmul", filter_only, flops, True, variant, shape_text),
        Pass(f"{name} bias gradient", name, "memory", with_bias[len(filter_only):], 0, True, variant, shape_text),
    ]  # fmt: skip


def _conv_passes(layer, batch, variant, first):
    from ..kernels.cuda import conv2d

    C, H, W = layer.in_shape
    K, P, Q = layer.out_shape
    K_, Cg, R, S = layer.weight_shape
    x, w, b, y = _zeros(batch, C, H, W), _zeros(*layer.weight_shape), _zeros(K), _zeros(batch, K, P, Q)
    flops = 2 * batch * K * P * Q * Cg * R * S
    g = f", groups {layer.groups}" if layer.groups > 1 else ""
    shape_text = f"{C}x{H}x{W} -> {K}x{P}x{Q}, {R}x{S}/{layer.stride}{g}"
    args = (layer.stride, layer.pad, layer.groups)
    forward = Pass(f"{layer.name} forward", layer.name, "matmul",
                   _captured(lambda: conv2d.conv2d_forward(y, x, w, b, *args)), flops, True, variant, shape_text)

    def backward(dx, dw, db):
        conv2d.conv2d_backward(dx, dw, db, x, w, y, *args)

    return [forward] + _backward_passes(layer, backward, _zeros(*x.shape), _zeros(*w.shape), _zeros(K), flops,
                                        shape_text, variant, in_step_data=not first)


def _linear_passes(layer, batch, variant):
    from ..kernels.cuda import linear

    (F_in,), (F_out,) = layer.in_shape, layer.out_shape
    x, w, b, y = _zeros(batch, F_in), _zeros(F_out, F_in), _zeros(F_out), _zeros(batch, F_out)
    flops = 2 * batch * F_in * F_out
    shape_text = f"{batch} x {F_in} -> {F_out}"
    forward = Pass(f"{layer.name} forward", layer.name, "matmul",
                   _captured(lambda: linear.linear_forward(y, x, w, b)), flops, True, variant, shape_text)

    def backward(dx, dw, db):
        linear.linear_backward(dx, dw, db, x, w, y)

    return [forward] + _backward_passes(layer, backward, _zeros(*x.shape), _zeros(*w.shape), _zeros(F_out), flops,
                                        shape_text, variant, in_step_data=True)


def _elementwise_passes(layer, batch, variant):
    from ..kernels.cuda import dropout, lrn, maxpool2d, relu
    from ..model import LRN_ALPHA, LRN_BETA, LRN_K

    x, y = _zeros(batch, *layer.in_shape), _zeros(batch, *layer.out_shape)
    dx, dy = _zeros(*x.shape), _zeros(*y.shape)
    shape_text = "x".join(str(s) for s in (batch, *layer.out_shape))
    if layer.kind == "relu":
        calls = [("forward", lambda: relu.relu_forward(y, x)), ("backward", lambda: relu.relu_backward(dx, y, dy))]
    elif layer.kind == "maxpool":
        argmax = _zeros(*y.shape, dtype=np.int32)
        calls = [("forward", lambda: maxpool2d.maxpool2d_forward(y, argmax, x, layer.size, layer.stride)),
                 ("backward", lambda: maxpool2d.maxpool2d_backward(dx, dy, argmax))]  # fmt: skip
    elif layer.kind == "lrn":
        scale = _zeros(*y.shape)
        calls = [("forward", lambda: lrn.lrn_forward(y, scale, x, layer.size, LRN_ALPHA, LRN_BETA, LRN_K)),
                 ("backward", lambda: lrn.lrn_backward(dx, x, y, scale, dy, layer.size, LRN_ALPHA, LRN_BETA, LRN_K))]  # fmt: skip
    elif layer.kind == "dropout":
        mask = _zeros(*y.shape, dtype=np.uint8)
        calls = [("forward", lambda: dropout.dropout_forward(y, mask, x, layer.p, 7)),
                 ("backward", lambda: dropout.dropout_backward(dx, dy, mask))]  # fmt: skip
    else:
        raise AssertionError(f"no passes for layer kind {layer.kind!r}")
    return [Pass(f"{layer.name} {what}", layer.name, "memory", _captured(call), 0, True, variant, shape_text)
            for what, call in calls]  # fmt: skip


def _loss_and_update_passes(batch, classes, params):
    from ..kernels.cuda import _grid, finite, sgd, softmax_cross_entropy

    logits, probs, labels = _zeros(batch, classes), _zeros(batch, classes), _zeros(batch, dtype=np.int32)
    w, dw, v = _zeros(params), _zeros(params), _zeros(params)
    blocks, threads = _grid.elementwise_grid(params)
    sce = softmax_cross_entropy
    return [
        Pass("loss forward", "loss", "memory",
             _captured(lambda: sce.softmax_cross_entropy(probs, _zeros(batch), logits, labels)), shape=f"{batch}x{classes}"),
        Pass("loss backward", "loss", "memory",
             _captured(lambda: sce.softmax_cross_entropy_backward(_zeros(batch, classes), probs, labels)),
             shape=f"{batch}x{classes}"),
        # finite.all_finite reads its flag back to the host; its one launch is made directly
        Pass("gradients finite", "sgd", "memory",
             _captured(lambda: finite._flag_non_finite[blocks, threads](dw, _zeros(1, dtype=np.int32))),
             shape=f"{params:,} parameters"),
        Pass("sgd update", "sgd", "memory",
             _captured(lambda: sgd.sgd_momentum_update(w, dw, v, 0.01, 0.9, 5e-4)), shape=f"{params:,} parameters"),
    ]  # fmt: skip


def alexnet_passes(batch=128, variant="seed", num_classes=1000, only_grouped=False):
    """Every pass of one training step of `variant` at `batch`. With `only_grouped`, just the matrix
    passes of the conv layers that have groups > 1 (what a second variant adds to the seed's table)."""
    from ..model import build_layers

    layers = build_layers(variant, num_classes, 227, dropout=0.5)
    passes = []
    for index, layer in enumerate(layers):
        if only_grouped and not (layer.kind == "conv" and layer.groups > 1):
            continue
        if layer.kind == "conv":
            passes += _conv_passes(layer, batch, variant, first=index == 0)
        elif layer.kind == "linear":
            passes += _linear_passes(layer, batch, variant)
        else:
            passes += _elementwise_passes(layer, batch, variant)
    if only_grouped:  # the bias gradients and everything else are the seed's
        passes = [p for p in passes if p.kind == "matmul"]
    else:
        passes += _loss_and_update_passes(batch, num_classes, sum(layer.param_count for layer in layers))
    for p in passes:
        p.variant = variant
    return passes
