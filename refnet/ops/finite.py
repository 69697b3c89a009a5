"""all_finite(x) -> bool: whether every element of a float32 array is finite (no NaN, no +-inf).

The trainer checks the gradient with it before each update, so that a non-finite step stops the
run with the parameters untouched; on the GPU only one int32 crosses to the host.
"""

import importlib

from ..device import backend_of
from ._checks import check_array


def all_finite(x):
    """True when no element of the float32 C-contiguous array `x` (any shape) is NaN or infinite."""
    check_array("x", x)
    kernels = importlib.import_module(f"refnet.kernels.{backend_of(x)}.finite")
    return bool(kernels.all_finite(x.reshape(-1)))
