"""Outputs poisoned before each kernel run, so that an element the kernel never wrote fails the test."""

import numpy as np


def poisoned(shape, dtype=np.float32):
    """NaN for float arrays, a large negative sentinel for integer arrays."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype=dtype)
    return np.full(shape, np.iinfo(dtype).min, dtype=dtype)


def assert_all_written(arr, name="output"):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        bad = np.isnan(arr)
    else:
        bad = arr == np.iinfo(arr.dtype).min
    assert not bad.any(), f"{name}: {int(bad.sum())} of {arr.size} elements were never written"
