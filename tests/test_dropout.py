"""Dropout: the counter-based mask (against SplitMix64 written in Python integers), its statistics,
determinism, independence from the thread count, the paper's test-time scaling, the backward."""

import numba
import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import dropout as ref

import refnet.ops as ops


def test_splitmix64_reference_matches_published_outputs():
    # First outputs of SplitMix64 for seeds 0 and 1234567 (Vigna's reference C code).
    assert ref.splitmix64_output(0, 0) == 0xE220A8397B1DCDAF
    assert ref.splitmix64_output(1234567, 0) == 6457827717110365317


@pytest.mark.parametrize("seed, p", [(0, 0.5), (1234567, 0.3), (2**64 - 1, 0.9)])
def test_mask_matches_reference_hash(rng, seed, p):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    # poison.py's integer sentinel (the dtype's minimum) is 0 for uint8, a valid mask value: use 255.
    mask_poisoned = np.full(x.shape, 255, np.uint8)
    y, mask = ops.dropout_forward(x, p, seed, out=(poisoned(x.shape), mask_poisoned))
    assert_all_written(y, "y")
    assert (mask <= 1).all(), "mask: some elements were never written"
    expected = np.array(ref.dropout_mask(seed, x.size, p), dtype=np.uint8).reshape(x.shape)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(y, x * expected)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_fraction_dropped_is_near_p(p):
    x = np.ones((64, 4096), np.float32)
    _, mask = ops.dropout_forward(x, p, seed=7)
    dropped = 1.0 - mask.mean()
    # Binomial standard deviation at n = 262144 is at most 0.001; allow 5 of them.
    assert abs(dropped - p) < 0.005


def test_same_seed_same_mask_other_seed_other_mask():
    x = np.ones(10_000, np.float32)
    _, a = ops.dropout_forward(x, 0.5, seed=1)
    _, b = ops.dropout_forward(x, 0.5, seed=1)
    _, c = ops.dropout_forward(x, 0.5, seed=2)
    np.testing.assert_array_equal(a, b)
    agreement = (a == c).mean()
    assert 0.45 < agreement < 0.55  # independent masks agree on about half the units


def test_mask_does_not_depend_on_thread_count():
    x = np.ones(200_000, np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        _, one = ops.dropout_forward(x, 0.5, seed=3)
    finally:
        numba.set_num_threads(before)
    _, many = ops.dropout_forward(x, 0.5, seed=3)
    np.testing.assert_array_equal(one, many)


def test_eval_multiplies_by_keep_probability(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    y, mask = ops.dropout_forward(x, 0.5, seed=0, train=False, out=(poisoned(x.shape), None))
    assert mask is None
    assert_all_written(y)
    np.testing.assert_allclose(y, x.astype(np.float64) * 0.5, rtol=1e-7)
    y, _ = ops.dropout_forward(x, 0.3, seed=0, train=False)
    np.testing.assert_allclose(y, x.astype(np.float64) * 0.7, rtol=1e-6)


def test_backward_matches_central_differences(rng):
    x = rng.standard_normal((3, 11)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, mask = ops.dropout_forward(x, 0.4, seed=5)
    dx = ops.dropout_backward(dy, mask, out=poisoned(x.shape))
    assert_all_written(dx)
    numeric = numerical_gradient(lambda v: float((v * mask * dy).sum()), x.astype(np.float64))
    assert_gradients_close(dx, numeric, rtol=1e-6)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(x=np.zeros(4)), "x"),
        (dict(p=1.0), "p"),
        (dict(p=-0.1), "p"),
        (dict(p=float("nan")), "p"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(train=1), "train"),
    ],
)
def test_forward_rejects_bad_argument(change, name):
    args = dict(x=np.zeros(4, np.float32), p=0.5, seed=0) | change
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.dropout_forward(**args)


def test_backward_rejects_bad_mask():
    dy = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"^mask: expected dtype uint8"):
        ops.dropout_backward(dy, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^mask: expected shape"):
        ops.dropout_backward(dy, np.ones((3, 2), np.uint8))


def test_seed_from_element_continues_the_mask_at_an_offset():
    """Two halves of a batch, each with its shifted seed, give the whole batch's mask."""
    from refnet.kernels.cpu.dropout import seed_from_element

    x = np.ones((6, 7), dtype=np.float32)
    seed = (1 << 64) - 5  # wraps around 2**64
    _, whole = ops.dropout_forward(x, 0.5, seed)
    _, top = ops.dropout_forward(x[:2].copy(), 0.5, seed)
    _, bottom = ops.dropout_forward(x[2:].copy(), 0.5, seed_from_element(seed, 2 * 7))
    np.testing.assert_array_equal(np.concatenate([top, bottom]), whole)
