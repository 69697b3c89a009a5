"""SGD with momentum and weight decay, in place (the paper's update rule, section 5):

    v = momentum * v - weight_decay * lr * w - lr * dw
    w = w + v
"""

import importlib

from ..device import backend_of
from ._checks import check_array, check_finite_float, check_same_backend


def sgd_momentum_update(w, dw, v, lr, momentum=0.9, weight_decay=5e-4):
    """Update w and v in place; w, dw, v float32 C-contiguous arrays of one shape. Returns None.

    lr > 0, 0 <= momentum < 1, weight_decay >= 0, all finite.
    """
    check_array("w", w)
    check_array("dw", dw, shape=tuple(w.shape))
    check_array("v", v, shape=tuple(w.shape))
    check_same_backend(w=w, dw=dw, v=v)
    lr = check_finite_float("lr", lr)
    if lr <= 0.0:
        raise ValueError(f"lr: expected > 0, got {lr}")
    momentum = check_finite_float("momentum", momentum, minimum=0.0, maximum=1.0, open_max=True)
    weight_decay = check_finite_float("weight_decay", weight_decay, minimum=0.0)
    kernels = importlib.import_module(f"refnet.kernels.{backend_of(w)}.sgd")
    kernels.sgd_momentum_update(w, dw, v, lr, momentum, weight_decay)
