"""Central-difference gradient checks in float64."""

import numpy as np


def numerical_gradient(f, x, eps=1e-6, indices=None):
    """d f(x) / d x by central differences; f returns a float, x is a float64 array changed in place
    and restored. With `indices` (flat indices), only those entries are computed (the rest stay 0).
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x = x.reshape(-1)
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size) if indices is None else indices:
        old = flat_x[i]
        flat_x[i] = old + eps
        plus = f(x)
        flat_x[i] = old - eps
        minus = f(x)
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients_close(analytic, numeric, rtol=1e-4, atol=1e-6, name="gradient"):
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    bad = ~np.isclose(analytic, numeric, rtol=rtol, atol=atol)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        rows = "; ".join(f"{tuple(i)}: analytic {analytic[tuple(i)]:.8g} numeric {numeric[tuple(i)]:.8g}" for i in idx)
        raise AssertionError(f"{name}: {bad.sum()} of {bad.size} entries differ (first: {rows})")
