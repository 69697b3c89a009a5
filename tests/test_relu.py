"""ReLU: forward against a float64 loop reference, backward by central differences, validation."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import relu as ref

import refnet.ops as ops


def away_from_kink(rng, shape):
    """Values with |x| >= 0.1 so a central difference never straddles 0."""
    x = rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x.astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 37), (100_003,)])
def test_forward_matches_reference(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = ops.relu_forward(x, out=poisoned(shape))
    assert_all_written(y)
    np.testing.assert_array_equal(y, ref.relu_forward(x.astype(np.float64)).astype(np.float32))


def test_forward_passes_nan_and_zeroes_negative_zero():
    x = np.array([np.nan, -0.0, -1.0, 2.0], dtype=np.float32)
    y = ops.relu_forward(x)
    assert np.isnan(y[0]) and y[1] == 0 and not np.signbit(y[1]) and y[2] == 0 and y[3] == 2


def test_backward_matches_central_differences(rng):
    x = away_from_kink(rng, (2, 3, 4, 5))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.relu_backward(ops.relu_forward(x), dy, out=poisoned(x.shape))
    assert_all_written(dx)
    numeric = numerical_gradient(lambda v: float((ref.relu_forward(v) * dy).sum()), x.astype(np.float64))
    assert_gradients_close(dx, numeric, rtol=1e-5, atol=1e-6)


def test_rejects_wrong_dtype():
    with pytest.raises(ValueError, match=r"^x: expected dtype float32"):
        ops.relu_forward(np.zeros(4))


def test_rejects_non_contiguous():
    with pytest.raises(ValueError, match=r"^x: expected a C-contiguous"):
        ops.relu_forward(np.zeros((4, 4), np.float32)[:, ::2])


def test_backward_rejects_mismatched_dy():
    with pytest.raises(ValueError, match=r"^dy: expected shape"):
        ops.relu_backward(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))


def test_rejects_wrong_out_shape():
    with pytest.raises(ValueError, match=r"^out: expected shape"):
        ops.relu_forward(np.zeros((2, 3), np.float32), out=np.zeros((3, 2), np.float32))
