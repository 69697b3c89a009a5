"""GEMM: c = alpha * op(a) @ op(b) + beta * c, op(a) = a.T when trans_a (likewise b).

a is (M, K) or, with trans_a, stored (K, M); b is (K, N) or, with trans_b, stored (N, K); c (M, N).
With beta == 0, c is not read (it may hold garbage or NaN). The result goes into `c` when it is
given (in place), else into `out` or a fresh array; `out` and `c` may both be given only as the
same array.
"""

import importlib

import numpy as np

from ..device import backend_of, is_device_array
from ._checks import check_array, check_finite_float, check_same_backend, output_or_new


def _kernels(x):
    return importlib.import_module(f"refnet.kernels.{backend_of(x)}.gemm")


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def _check_no_overlap(c, **inputs):
    """The kernel reads a and b while it writes c: they must not share memory."""
    if is_device_array(c):
        return
    for name, x in inputs.items():
        if np.may_share_memory(c, x):
            raise ValueError(f"{name}: expected an array that does not share memory with the output c, got one that does")


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, out=None):
    """c = alpha * op(a) @ op(b) + beta * c for float32 2-D C-contiguous arrays; returns c."""
    check_array("a", a, ndim=2)
    check_array("b", b, ndim=2)
    trans_a = _check_flag("trans_a", trans_a)
    trans_b = _check_flag("trans_b", trans_b)
    alpha = check_finite_float("alpha", alpha)
    beta = check_finite_float("beta", beta)
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    K_b, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if K_b != K:
        raise ValueError(
            f"b: expected op(b) with {K} rows to match op(a)'s {K} columns (K), got op(b) of shape {(K_b, N)}"
        )
    if min(M, N, K) < 1:
        raise ValueError(f"a, b: expected M, N, K >= 1, got M={M}, N={N}, K={K}")
    if out is not None and c is not None and out is not c:
        raise ValueError("out: expected the same array as c (the result is written into c), got a different array")
    if c is None and beta != 0.0:
        raise ValueError(f"c: expected an (M, N) = {(M, N)} array to scale by beta={beta}, got None")
    check_same_backend(a=a, b=b, c=c, out=out)
    result = output_or_new("c" if c is not None else "out", c if c is not None else out, (M, N), np.float32, like=a)
    _check_no_overlap(result, a=a, b=b)
    _kernels(a).gemm(result, a, b, trans_a, trans_b, alpha, beta)
    return result
