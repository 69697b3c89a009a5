"""refnet.ops: the one public op API.

Every function takes float32 C-contiguous arrays (activations NCHW, conv weights (K, C/groups, R, S),
FC weights (out, in)), validates them here at the edge, and dispatches on the array type: numpy
arrays run the CPU @njit kernel in `refnet/kernels/cpu/<op>.py`, Numba CUDA device arrays run the
@cuda.jit kernel of the same name in `refnet/kernels/cuda/<op>.py`.

Conventions (shared by every op):
- Outputs are freshly allocated unless `out=` is given (a tuple of the same arity for ops that
  return several arrays). `out=` arrays must already have the right shape and dtype; every element
  of them is written.
- Gradient convention: every backward *writes* (=) its gradients, nothing accumulates; the network
  writes each parameter gradient exactly once per step.

The op modules are imported on first use, so `import refnet.ops` is cheap.
"""

import importlib

_OPS = {
    "conv2d_forward": "conv2d",
    "conv2d_backward": "conv2d",
    "gemm": "gemm",
    "linear_forward": "linear",
    "linear_backward": "linear",
    "maxpool2d_forward": "maxpool2d",
    "maxpool2d_backward": "maxpool2d",
    "avgpool2d_forward": "avgpool2d",
    "avgpool2d_backward": "avgpool2d",
    "lrn_forward": "lrn",
    "lrn_backward": "lrn",
    "relu_forward": "relu",
    "relu_backward": "relu",
    "dropout_forward": "dropout",
    "dropout_backward": "dropout",
    "softmax_cross_entropy": "softmax_cross_entropy",
    "softmax_cross_entropy_backward": "softmax_cross_entropy",
    "sgd_momentum_update": "sgd",
    "all_finite": "finite",
}

__all__ = sorted(_OPS)


def __getattr__(name):
    module = _OPS.get(name)
    if module is None:
        raise AttributeError(f"module 'refnet.ops' has no attribute {name!r}")
    loaded = importlib.import_module(f".{module}", __name__)
    # Importing the submodule binds its name here (refnet.ops.softmax_cross_entropy = the module),
    # which would hide the op of the same name: bind every op of the module instead.
    for op, op_module in _OPS.items():
        if op_module == module:
            globals()[op] = getattr(loaded, op)
    return globals()[name]


def __dir__():
    return __all__
