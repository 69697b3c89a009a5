"""LRN: forward against the paper's formula in float64 loops (channel edges, C < size, the paper's
constants and stronger ones that make the normalisation matter), the fast kernels against the plain
reference kernels across chunk boundaries, the exact backward by central differences, validation."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import lrn as ref

import refnet.ops as ops
from refnet.kernels.cpu import lrn as lrn_kernels

PAPER = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
# Strong enough that the neighbours' term dominates: catches a wrong window or a wrong sign.
STRONG = dict(size=5, alpha=0.3, beta=0.75, k=1.0)
GENERAL_BETA = dict(size=3, alpha=0.2, beta=0.6, k=1.5)  # not 3/4: the pow path

CASES = [
    ((2, 7, 3, 5), PAPER, 30.0),  # conv-sized activations so the paper's alpha shows
    ((2, 7, 3, 5), STRONG, 1.0),
    ((1, 2, 4, 3), STRONG, 1.0),  # C < size: every window clipped at both ends
    ((1, 1, 2, 2), STRONG, 1.0),
    ((1, 6, 3, 3), GENERAL_BETA, 1.0),
    ((1, 4, 2, 3), dict(size=1, alpha=0.5, beta=0.75, k=2.0), 1.0),
]


@pytest.mark.parametrize("shape, params, magnitude", CASES)
def test_forward_matches_formula(rng, shape, params, magnitude):
    x = (rng.standard_normal(shape) * magnitude).astype(np.float32)
    y, scale = ops.lrn_forward(x, **params, out=(poisoned(shape), poisoned(shape)))
    assert_all_written(y, "y")
    assert_all_written(scale, "scale")
    y_ref, scale_ref = ref.lrn_forward(x.astype(np.float64), **params)
    np.testing.assert_allclose(scale, scale_ref, rtol=2e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-7)


def test_alpha_is_not_divided_by_size():
    # One channel holding 1.0 next to zeros: scale = k + alpha * 1 at every channel whose window sees it.
    x = np.zeros((1, 5, 1, 1), np.float32)
    x[0, 2] = 1.0
    _, scale = ops.lrn_forward(x, size=5, alpha=0.1, beta=0.75, k=2.0)
    np.testing.assert_allclose(scale.reshape(-1), [2.1] * 5, rtol=1e-6)
    _, scale = ops.lrn_forward(x, size=3, alpha=0.1, beta=0.75, k=2.0)
    np.testing.assert_allclose(scale.reshape(-1), [2.0, 2.1, 2.1, 2.1, 2.0], rtol=1e-6)


@pytest.mark.parametrize("params", [STRONG, GENERAL_BETA])
def test_fast_kernels_match_reference_kernels(rng, params):
    # HW = 17*19 = 323 spans two of the fast kernels' hw chunks.
    shape = (2, 7, 17, 19)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    size, alpha, beta, k = (params[n] for n in ("size", "alpha", "beta", "k"))
    y_ref, scale_ref, dx_ref = poisoned(shape), poisoned(shape), poisoned(shape)
    f32 = np.float32
    lrn_kernels.lrn_forward_reference(y_ref, scale_ref, x, size, f32(alpha), f32(beta), f32(k))
    lrn_kernels.lrn_backward_reference(dx_ref, x, y_ref, scale_ref, dy, size, f32(alpha), f32(beta), f32(k))
    y, scale = ops.lrn_forward(x, **params)
    dx = ops.lrn_backward(x, y, scale, dy, **params)
    np.testing.assert_array_equal(scale, scale_ref)
    np.testing.assert_allclose(y, y_ref, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, params, magnitude", CASES)
def test_backward_matches_central_differences(rng, shape, params, magnitude):
    x = (rng.standard_normal(shape) * magnitude).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, scale = ops.lrn_forward(x, **params)
    dx = ops.lrn_backward(x, y, scale, dy, **params, out=poisoned(shape))
    assert_all_written(dx)
    loss = lambda v: float((ref.lrn_forward(v, **params)[0] * dy).sum())
    numeric = numerical_gradient(loss, x.astype(np.float64), eps=1e-6 * magnitude)
    assert_gradients_close(dx, numeric, rtol=1e-4, atol=1e-5)


def test_is_deterministic(rng):
    x = rng.standard_normal((3, 9, 17, 17)).astype(np.float32)
    y, scale = ops.lrn_forward(x, **STRONG)
    dx = ops.lrn_backward(x, y, scale, x, **STRONG)
    y2, scale2 = ops.lrn_forward(x, **STRONG)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, ops.lrn_backward(x, y2, scale2, x, **STRONG))


X = np.ones((1, 3, 2, 2), np.float32)


@pytest.mark.parametrize(
    "x, change, name",
    [
        (X[0], {}, "x"),
        (X.astype(np.float64), {}, "x"),
        (X, dict(size=4), "size"),
        (X, dict(size=0), "size"),
        (X, dict(alpha=-1e-4), "alpha"),
        (X, dict(alpha=float("inf")), "alpha"),
        (X, dict(beta=-0.75), "beta"),
        (X, dict(k=0.0), "k"),
        (X, dict(k=float("nan")), "k"),
    ],
)
def test_forward_rejects_bad_argument(x, change, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.lrn_forward(x, **(PAPER | change))


@pytest.mark.parametrize("which", ["y", "scale", "dy"])
def test_backward_rejects_mismatched_array(which):
    arrays = dict(x=X, y=X, scale=X, dy=X) | {which: np.ones((1, 3, 2, 3), np.float32)}
    with pytest.raises(ValueError, match=rf"^{which}: expected shape"):
        ops.lrn_backward(**arrays)
