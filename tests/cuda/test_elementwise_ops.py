"""CUDA element-wise, pooling, normalisation, loss and optimiser ops against the CPU ops on tiny
shapes (every device output poisoned with NaN first)."""

import numpy as np
import pytest

from refnet import ops

RTOL, ATOL = 1e-5, 1e-6


def test_relu_matches_cpu(gpu, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    x[0, 0, 0, :2] = [0.0, -0.0]
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.relu_forward(gpu.put(x), out=gpu.poisoned(x.shape))
    y_cpu = ops.relu_forward(x)
    np.testing.assert_array_equal(gpu.get(y, "y"), y_cpu)
    x[0, 0, 0, 2] = np.nan
    assert np.isnan(ops.relu_forward(gpu.put(x)).copy_to_host()[0, 0, 0, 2])  # NaN is never hidden
    dx = ops.relu_backward(gpu.put(y_cpu), gpu.put(dy), out=gpu.poisoned(x.shape))
    np.testing.assert_array_equal(gpu.get(dx, "dx"), ops.relu_backward(y_cpu, dy))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator runs the
# uint64 hash in numpy, which warns on the wrap-around the hash relies on
def test_dropout_mask_is_the_cpu_mask(gpu, rng):
    x = rng.standard_normal((3, 77)).astype(np.float32)
    seed = 2**63 + 12345
    y, mask = ops.dropout_forward(gpu.put(x), 0.5, seed, out=(gpu.poisoned(x.shape), gpu.poisoned(x.shape, np.uint8)))
    y_cpu, mask_cpu = ops.dropout_forward(x, 0.5, seed)
    np.testing.assert_array_equal(mask.copy_to_host(), mask_cpu)
    np.testing.assert_array_equal(gpu.get(y, "y"), y_cpu)
    assert 0 < mask_cpu.sum() < mask_cpu.size

    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.dropout_backward(gpu.put(dy), mask, out=gpu.poisoned(x.shape))
    np.testing.assert_array_equal(gpu.get(dx, "dx"), ops.dropout_backward(dy, mask_cpu))

    y_eval, no_mask = ops.dropout_forward(gpu.put(x), 0.5, seed, train=False, out=(gpu.poisoned(x.shape), None))
    assert no_mask is None
    np.testing.assert_array_equal(gpu.get(y_eval, "y_eval"), ops.dropout_forward(x, 0.5, seed, train=False)[0])


def test_sgd_matches_cpu(gpu, rng):
    w, dw, v = (rng.standard_normal(301).astype(np.float32) for _ in range(3))
    w_gpu, v_gpu = gpu.put(w), gpu.put(v)
    ops.sgd_momentum_update(w_gpu, gpu.put(dw), v_gpu, 0.01, 0.9, 5e-4)
    ops.sgd_momentum_update(w, dw, v, 0.01, 0.9, 5e-4)
    np.testing.assert_allclose(w_gpu.copy_to_host(), w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(v_gpu.copy_to_host(), v, rtol=RTOL, atol=ATOL)


def test_softmax_cross_entropy_matches_cpu(gpu, rng):
    logits = (5 * rng.standard_normal((3, 300))).astype(np.float32)  # more classes than threads
    labels = np.array([0, 299, 17], dtype=np.int32)
    row_loss = gpu.poisoned((3,))
    loss, probs = ops.softmax_cross_entropy(
        gpu.put(logits), gpu.put(labels), out=gpu.poisoned(logits.shape), row_loss=row_loss
    )
    loss_cpu, probs_cpu = ops.softmax_cross_entropy(logits, labels)
    gpu.get(row_loss, "row_loss")
    assert loss == pytest.approx(loss_cpu, rel=1e-5)
    np.testing.assert_allclose(gpu.get(probs, "probs"), probs_cpu, rtol=1e-5, atol=1e-7)

    dlogits = ops.softmax_cross_entropy_backward(probs, gpu.put(labels), out=gpu.poisoned(logits.shape))
    np.testing.assert_allclose(
        gpu.get(dlogits, "dlogits"), ops.softmax_cross_entropy_backward(probs_cpu, labels), rtol=1e-5, atol=1e-8
    )


def test_device_labels_out_of_range_are_a_value_error_without_a_host_check(gpu, rng):
    """Device labels are checked by the kernel (no extra copy to the host per step): the forward
    still raises the ValueError naming the label; the backward poisons the label's row."""
    logits = rng.standard_normal((3, 5)).astype(np.float32)
    labels = np.array([1, 5, 0], dtype=np.int32)
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 5\), got labels\[1\] = 5"):
        ops.softmax_cross_entropy(gpu.put(logits), gpu.put(labels))
    probs = ops.softmax_cross_entropy(logits, np.array([1, 4, 0], dtype=np.int32))[1]
    dlogits = ops.softmax_cross_entropy_backward(gpu.put(probs), gpu.put(labels)).copy_to_host()
    assert np.isnan(dlogits[1]).all() and np.isfinite(dlogits[[0, 2]]).all()


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_matches_cpu(gpu, rng, beta):
    x = (10 * rng.standard_normal((2, 7, 3, 5))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    params = dict(size=5, alpha=1e-2, beta=beta, k=2.0)  # a large alpha so the window matters
    y, scale = ops.lrn_forward(gpu.put(x), **params, out=(gpu.poisoned(x.shape), gpu.poisoned(x.shape)))
    y_cpu, scale_cpu = ops.lrn_forward(x, **params)
    np.testing.assert_allclose(gpu.get(scale, "scale"), scale_cpu, rtol=RTOL)
    np.testing.assert_allclose(gpu.get(y, "y"), y_cpu, rtol=RTOL, atol=ATOL)
    dx = ops.lrn_backward(gpu.put(x), y, scale, gpu.put(dy), **params, out=gpu.poisoned(x.shape))
    dx_cpu = ops.lrn_backward(x, y_cpu, scale_cpu, dy, **params)
    np.testing.assert_allclose(gpu.get(dx, "dx"), dx_cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size, stride", [(3, 2), (2, 3), (3, 1)])
def test_maxpool_matches_cpu(gpu, rng, size, stride):
    # 3x3/2 overlaps (the paper's), 2/3 leaves gaps, 3/1 lets one input win up to 9 windows
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    x[1, 2, 4, 4] = 10.0  # wins several windows
    x[1, 2, 6, 5] = 20.0  # with 3/1, wins windows 27..41: both sides of the backward's 32-window chunks
    x[0, 1, 2, 3] = np.nan
    y_cpu, argmax_cpu = ops.maxpool2d_forward(x, size, stride)
    y, argmax = ops.maxpool2d_forward(
        gpu.put(x), size, stride, out=(gpu.poisoned(y_cpu.shape), gpu.poisoned(y_cpu.shape, np.int32))
    )
    np.testing.assert_array_equal(argmax.copy_to_host(), argmax_cpu)
    np.testing.assert_array_equal(y.copy_to_host(), y_cpu)  # NaN where the CPU has NaN

    dy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    dx = ops.maxpool2d_backward(gpu.put(dy), argmax, x.shape, out=gpu.poisoned(x.shape))
    np.testing.assert_array_equal(gpu.get(dx, "dx"), ops.maxpool2d_backward(dy, argmax_cpu, x.shape))


@pytest.mark.parametrize("size, stride", [(3, 2), (2, 3)])
def test_avgpool_matches_cpu(gpu, rng, size, stride):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    y_cpu = ops.avgpool2d_forward(x, size, stride)
    y = ops.avgpool2d_forward(gpu.put(x), size, stride, out=gpu.poisoned(y_cpu.shape))
    np.testing.assert_allclose(gpu.get(y, "y"), y_cpu, rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    dx = ops.avgpool2d_backward(gpu.put(dy), x.shape, size, stride, out=gpu.poisoned(x.shape))
    np.testing.assert_allclose(gpu.get(dx, "dx"), ops.avgpool2d_backward(dy, x.shape, size, stride), rtol=RTOL, atol=ATOL)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the simulator runs
# inf - inf in numpy, which warns about the NaN the kernel tests for
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_all_finite_matches_cpu(gpu, rng, bad):
    x = rng.standard_normal((3, 301)).astype(np.float32)
    if bad is not None:
        x[2, 300] = bad
    assert ops.all_finite(gpu.put(x)) is ops.all_finite(x) is (bad is None)
