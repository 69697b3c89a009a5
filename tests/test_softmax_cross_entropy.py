"""Softmax cross-entropy: loss and probabilities against float64 loops, large logits stay finite,
the backward by central differences, label validation naming the first bad label."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import softmax_cross_entropy as ref

import refnet.ops as ops


@pytest.mark.parametrize("n, k", [(1, 1), (3, 7), (5, 1000)])
def test_matches_reference(rng, n, k):
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    labels = rng.integers(0, k, size=n).astype(np.int32)
    loss, probs = ops.softmax_cross_entropy(logits, labels, out=poisoned((n, k)), row_loss=poisoned((n,)))
    assert_all_written(probs)
    assert isinstance(loss, float)
    loss_ref, probs_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert loss == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, atol=1e-8)


def test_large_logits_stay_finite():
    logits = np.array([[1e4, -1e4, 0.0], [88.0, 89.0, 500.0], [-1e30, -1e30, -1e30]], np.float32)
    labels = np.array([1, 0, 2], np.int32)
    loss, probs = ops.softmax_cross_entropy(logits, labels)
    loss_ref, probs_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert np.isfinite(loss) and np.isfinite(probs).all()
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    np.testing.assert_allclose(probs, probs_ref, atol=1e-7)


def test_backward_matches_central_differences(rng):
    n, k = 4, 6
    logits = rng.standard_normal((n, k)).astype(np.float32)
    labels = np.array([0, 5, 2, 2], np.int32)
    _, probs = ops.softmax_cross_entropy(logits, labels)
    dlogits = ops.softmax_cross_entropy_backward(probs, labels, out=poisoned((n, k)))
    assert_all_written(dlogits)
    numeric = numerical_gradient(lambda v: ref.softmax_cross_entropy(v, labels)[0], logits.astype(np.float64))
    assert_gradients_close(dlogits, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fn", ["forward", "backward"])
def test_names_first_bad_label(fn):
    scores = np.zeros((4, 10), np.float32)
    labels = np.array([3, -1, 10, 2], np.int32)
    call = ops.softmax_cross_entropy if fn == "forward" else ops.softmax_cross_entropy_backward
    with pytest.raises(ValueError, match=r"^labels: expected values in \[0, 10\), got labels\[1\] = -1"):
        call(scores, labels)


@pytest.mark.parametrize(
    "logits, labels, name",
    [
        (np.zeros(10, np.float32), np.zeros(1, np.int32), "logits"),
        (np.zeros((0, 10), np.float32), np.zeros(0, np.int32), "logits"),
        (np.zeros((2, 10)), np.zeros(2, np.int32), "logits"),
        (np.zeros((2, 10), np.float32), np.zeros(2, np.int64), "labels"),
        (np.zeros((2, 10), np.float32), np.zeros(3, np.int32), "labels"),
    ],
)
def test_rejects_bad_argument(logits, labels, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.softmax_cross_entropy(logits, labels)
