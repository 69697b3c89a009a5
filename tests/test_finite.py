"""ops.all_finite: the trainer's guard against NaN and infinite gradients."""

import numpy as np
import pytest

from refnet import ops


@pytest.mark.parametrize("size", [1, 7, (1 << 15) + 3])
def test_finite_arrays_pass(rng, size):
    x = rng.standard_normal(size).astype(np.float32)
    x[0] = np.finfo(np.float32).max  # huge but finite
    assert ops.all_finite(x) is True


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 40000, -1])  # first, inside a later block, the ragged last element
def test_one_bad_value_anywhere_is_found(rng, bad, where):
    x = rng.standard_normal((2, 3, 71, 97)).astype(np.float32)
    x.reshape(-1)[where] = bad
    assert ops.all_finite(x) is False


def test_input_is_checked():
    with pytest.raises(ValueError, match="x: expected dtype float32, got float64"):
        ops.all_finite(np.zeros(3))
    with pytest.raises(ValueError, match="x: expected a C-contiguous array"):
        ops.all_finite(np.zeros((4, 4), np.float32)[:, ::2])
