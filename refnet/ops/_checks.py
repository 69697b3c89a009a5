"""Argument checks shared by every op: run once at the API edge, never inside a kernel.

Every failure is a ValueError that names the argument, what was expected and what was given.
The checks work on numpy arrays and on Numba CUDA device arrays (real or simulated) alike.
"""

import math

import numpy as np

from ..device import is_device_array


def _is_c_contiguous(x) -> bool:
    flags = getattr(x, "flags", None)
    if flags is not None:
        try:
            return bool(flags["C_CONTIGUOUS"])
        except (KeyError, TypeError):
            pass
    method = getattr(x, "is_c_contiguous", None)
    if method is not None:
        return bool(method())
    return True


def check_array(name, x, *, ndim=None, dtype=np.float32, shape=None):
    """Check that `x` is a C-contiguous array of `dtype` with `ndim` dims and (optionally) `shape`.

    `shape` may contain None for "any size" in that position.
    """
    if not (isinstance(x, np.ndarray) or is_device_array(x)):
        raise ValueError(f"{name}: expected a numpy or CUDA device array, got {type(x).__name__}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype).name}, got {np.dtype(x.dtype).name}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got {x.ndim}-D with shape {tuple(x.shape)}")
    if shape is not None and x.shape != shape:
        if len(shape) != x.ndim or any(want is not None and want != got for want, got in zip(shape, x.shape)):
            want = tuple("*" if s is None else s for s in shape)
            raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if not _is_c_contiguous(x):
        raise ValueError(f"{name}: expected a C-contiguous array, got a non-contiguous one (use np.ascontiguousarray)")
    return x


def check_same_backend(**arrays):
    """All given arrays (None entries ignored) must live on the same backend (numpy or CUDA)."""
    if all(a is None or type(a) is np.ndarray for a in arrays.values()):
        return "cpu"
    kinds = {name: ("cuda" if is_device_array(a) else "cpu") for name, a in arrays.items() if a is not None}
    if len(set(kinds.values())) > 1:
        desc = ", ".join(f"{n}={k}" for n, k in kinds.items())
        raise ValueError(f"arrays must all be numpy arrays or all CUDA device arrays, got {desc}")
    return next(iter(kinds.values()), "cpu")


def check_positive_int(name, value, *, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_finite_float(name, value, *, minimum=None, maximum=None, open_max=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {v}")
    if maximum is not None and (v >= maximum if open_max else v > maximum):
        bound = "<" if open_max else "<="
        raise ValueError(f"{name}: expected {bound} {maximum}, got {v}")
    return v


def output_or_new(name, out, shape, dtype, like):
    """Return `out` after checking it, or a fresh array on the same backend as `like`."""
    if out is None:
        if is_device_array(like):
            from numba import cuda

            return cuda.device_array(shape, dtype=dtype)
        return np.empty(shape, dtype=dtype)
    check_array(name, out, dtype=dtype, shape=tuple(shape))
    if is_device_array(out) != is_device_array(like):
        raise ValueError(f"{name}: must be on the same backend as the inputs")
    return out
