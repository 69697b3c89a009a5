"""Which backend an array belongs to, without importing numba.cuda on the CPU path.

Real Numba device arrays expose `__cuda_array_interface__`; the CUDA simulator's FakeCUDAArray
does not (and `numba.cuda.is_cuda_array` does not exist there), so both are recognised here.
"""

import numpy as np


def is_device_array(x) -> bool:
    """True for a Numba CUDA device array (real GPU or the CUDA simulator's stand-in)."""
    if type(x) is np.ndarray:  # the CPU path's answer without an attribute lookup that fails
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    return type(x).__name__ == "FakeCUDAArray"


def backend_of(x) -> str:
    """'cuda' for a device array, 'cpu' otherwise."""
    return "cuda" if is_device_array(x) else "cpu"
