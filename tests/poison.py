"""Outputs poisoned before each kernel run, so that an element the kernel never wrote fails the test."""

import numpy as np


def poisoned(shape, dtype=np.float32):
    """NaN for float arrays; for integer arrays a sentinel no kernel writes: the most negative value
    (signed) or the largest (unsigned: 0 is a valid mask value)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype=dtype)
    return np.full(shape, _sentinel(dtype), dtype=dtype)


def _sentinel(dtype):
    info = np.iinfo(dtype)
    return info.max if dtype.kind == "u" else info.min


def assert_all_written(arr, name="output"):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        bad = np.isnan(arr)
    else:
        bad = arr == _sentinel(arr.dtype)
    assert not bad.any(), f"{name}: {int(bad.sum())} of {arr.size} elements were never written"
