"""LRN: forward against the paper's formula in float64 loops (channel edges, C < size, the paper's
constants and stronger ones that make the normalisation matter), the fast kernels against the plain
reference kernels across chunk boundaries, the exact backward by central differences, validation."""

import os
import subprocess
import sys

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
@pytest.mark.parametrize(
    "shape",
    [
        (2, 7, 17, 19),  # rows of 323: 20 vectors and a masked tail of 3
        (2, 16, 10, 13),  # the run of channels 2 .. 13 (1,560 values): a whole CHUNK and a part
        (3, 4, 3, 3),  # C < 5: every row clipped
    ],
)
def test_fast_kernels_match_reference_kernels(rng, params, shape):
    assert (16 - 4) * 10 * 13 > lrn_kernels.CHUNK  # the second shape's run takes two chunks
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    size, alpha, beta, k = (params[n] for n in ("size", "alpha", "beta", "k"))
    y_ref, scale_ref, dx_ref = poisoned(shape), poisoned(shape), poisoned(shape)
    f32 = np.float32
    lrn_kernels.lrn_forward_reference(y_ref, scale_ref, x, size, f32(alpha), f32(beta), f32(k))
    lrn_kernels.lrn_backward_reference(dx_ref, x, y_ref, scale_ref, dy, size, f32(alpha), f32(beta), f32(k))
    y, scale = ops.lrn_forward(x, **params, out=(poisoned(shape), poisoned(shape)))
    dx = ops.lrn_backward(x, y, scale, dy, **params, out=poisoned(shape))
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


@pytest.mark.parametrize("hw", [(1, 16 * 40), (3, 37)])
def test_estimated_power_over_the_normal_range(rng, hw):
    """beta = 0.75 takes scale^(-3/4) from the square-root estimate and Newton steps: within 5e-7
    of float64 for scales from k = 2^-126 up to 2^126, in whole vectors and in a row's masked tail
    (37 values: 2 vectors and 5). The gradient's 1 / scale likewise, over scales whose products
    stay inside float32's normal range."""
    k = 2.0**-126
    shape = (1, 1) + hw
    for lowest, highest in ((-126, 126), (-30, 30)):
        target = np.exp2(rng.uniform(lowest, highest, shape))
        x = np.sqrt(np.maximum(target - k, 0.0)).astype(np.float32)
        params = dict(size=1, alpha=1.0, beta=0.75, k=k)
        y, scale = ops.lrn_forward(x, **params, out=(poisoned(shape), poisoned(shape)))
        assert_all_written(y, "y")
        want = x.astype(np.float64) * scale.astype(np.float64) ** -0.75
        np.testing.assert_allclose(y, want, rtol=5e-7, atol=0)
    # size 1: dx = dy s^(-3/4) - 1.5 x (dy y / s).
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = ops.lrn_backward(x, y, scale, dy, **params, out=poisoned(shape))
    s64, y64, dy64 = scale.astype(np.float64), y.astype(np.float64), dy.astype(np.float64)
    want_dx = dy64 * s64**-0.75 - 1.5 * x.astype(np.float64) * dy64 * y64 / s64
    np.testing.assert_allclose(dx, want_dx, rtol=2e-6, atol=0)


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


def test_estimated_power_without_avx2():
    """Where the target lacks AVX2 (here Numba's "generic" x86-64), vrsqrt_estimate is the exact
    1 / sqrt, and the paper's LRN still matches float64."""
    script = (
        "import numpy as np, refnet.ops as ops\n"
        "from refnet.kernels.cpu import machine\n"
        "assert not machine.AVX2\n"
        "x = (np.random.default_rng(0).standard_normal((2, 7, 5, 7)) * 30).astype(np.float32)\n"
        "y, scale = ops.lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0)\n"
        "want = x.astype(np.float64) * scale.astype(np.float64) ** -0.75\n"
        "np.testing.assert_allclose(y, want, rtol=5e-7, atol=0)\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CPU_FEATURES="")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
