"""SGD with momentum: several steps against the formula in float64, validation of every argument."""

import numpy as np
import pytest
from refs import sgd as ref

import refnet.ops as ops


@pytest.mark.parametrize("shape", [(7,), (3, 5, 2), (70_001,)])
def test_several_steps_match_formula(rng, shape):
    w = rng.standard_normal(shape).astype(np.float32)
    v = np.zeros(shape, np.float32)
    w_ref, v_ref = w.astype(np.float64), v.astype(np.float64)
    for step in range(4):
        dw = rng.standard_normal(shape).astype(np.float32)
        ops.sgd_momentum_update(w, dw, v, lr=0.01, momentum=0.9, weight_decay=5e-4)
        w_ref, v_ref = ref.sgd_momentum_update(w_ref, dw, v_ref, 0.01, 0.9, 5e-4)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7)


def test_defaults_are_the_papers(rng):
    w = np.ones(3, np.float32)
    v = np.full(3, 2.0, np.float32)
    dw = np.full(3, 0.5, np.float32)
    ops.sgd_momentum_update(w, dw, v, lr=0.1)
    expected_v = 0.9 * 2.0 - 5e-4 * 0.1 * 1.0 - 0.1 * 0.5
    np.testing.assert_allclose(v, expected_v, rtol=1e-6)
    np.testing.assert_allclose(w, 1.0 + expected_v, rtol=1e-6)


def arrays(n=4):
    return np.ones(n, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(w=np.ones(4)), "w"),
        (dict(dw=np.ones(5, np.float32)), "dw"),
        (dict(v=np.zeros((2, 2), np.float32)), "v"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(momentum=-0.1), "momentum"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(weight_decay=float("nan")), "weight_decay"),
    ],
)
def test_rejects_bad_argument(change, name):
    w, dw, v = arrays()
    args = dict(w=w, dw=dw, v=v, lr=0.01, momentum=0.9, weight_decay=5e-4) | change
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.sgd_momentum_update(**args)
