"""Bit-identical results with 1 and 2 Numba threads, through the public ops (so every kernel path
they dispatch to at these geometries is covered, whatever path a later change adds), and a training
run resumed with another --workers count that ends bit-identical to an uninterrupted one.

The trainer's resume relies on this when a run moves to a machine with another core count; the
kernels promise it by summing in a fixed number of parts (kernels/cpu/partial_sums.py) or by
giving each output element to one task.
"""

import numba
import numpy as np
import pytest

from refnet import checkpoint as ck
from refnet import ops
from refnet.cli import main
from test_train import read_records, train_args, write_learnable_shards

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                reason="one core: Numba runs a single thread, nothing to compare")  # fmt: skip

# (N, C, H, W, K, R, S, stride, pad, groups): batches large enough for several chunks and parts in
# the weight gradient's partial sums (N * P * Q well over the im2col chunk of 1024 output pixels).
CONV_GEOMETRIES = {
    "conv1-like 11x11/4": (8, 3, 39, 39, 8, 11, 11, 4, 0, 1),
    "3x3 output, 3x3 p1 (packed dw)": (32, 4, 3, 3, 6, 3, 3, 1, 1, 1),
    "3x3 output, 3x3 p1, groups 2": (200, 4, 3, 3, 6, 3, 3, 1, 1, 2),
    "6x6 output, 5x5 p2": (40, 3, 6, 6, 4, 5, 5, 1, 2, 1),
    "7x7 output, 3x3 p1": (40, 4, 7, 7, 6, 3, 3, 1, 1, 1),
    "7x7 output, 5x5 p2, groups 2": (40, 4, 7, 7, 6, 5, 5, 1, 2, 2),
    "13x13 output, 3x3 p1": (12, 4, 13, 13, 6, 3, 3, 1, 1, 1),
    "13x13 output, 5x5 p2": (12, 3, 13, 13, 4, 5, 5, 1, 2, 1),
    "strided 3x3/2": (16, 3, 17, 17, 5, 3, 3, 2, 1, 1),
}


def with_threads(threads, fn):
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(threads)
        return fn()
    finally:
        numba.set_num_threads(saved)


def assert_same_with_one_and_two_threads(fn):
    """fn() returns a list of arrays; they must agree bit for bit with 1 and with 2 threads."""
    one, two = with_threads(1, fn), with_threads(2, fn)
    assert len(one) == len(two)
    for index, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {index}")


def floats(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES.values(), ids=CONV_GEOMETRIES.keys())
def test_conv2d_forward_and_backward(rng, geometry):
    N, C, H, W, K, R, S, stride, pad, groups = geometry
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
    x, w, b = floats(rng, N, C, H, W), floats(rng, K, C // groups, R, S), floats(rng, K)
    dy = floats(rng, N, K, P, Q)

    def run():
        y = ops.conv2d_forward(x, w, b, stride=stride, pad=pad, groups=groups)
        return [y, *ops.conv2d_backward(x, w, dy, stride=stride, pad=pad, groups=groups)]

    assert_same_with_one_and_two_threads(run)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_gemm(rng, trans_a, trans_b):
    M, N, K = 300, 260, 530
    a = floats(rng, *((K, M) if trans_a else (M, K)))
    b = floats(rng, *((N, K) if trans_b else (K, N)))
    assert_same_with_one_and_two_threads(lambda: [ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)])


def test_linear_forward_and_backward(rng):
    x, w, b, dy = floats(rng, 64, 300), floats(rng, 520, 300), floats(rng, 520), floats(rng, 64, 520)
    assert_same_with_one_and_two_threads(lambda: [ops.linear_forward(x, w, b), *ops.linear_backward(x, w, dy)])


def test_the_other_ops(rng):
    """Pools, LRN, ReLU, dropout, softmax loss (a sum over the batch), SGD, the finiteness check."""
    x, dy_pool = floats(rng, 6, 16, 15, 15), floats(rng, 6, 16, 7, 7)
    logits, labels = floats(rng, 64, 100), (np.arange(64) % 100).astype(np.int32)
    w, dw, v = floats(rng, 5000), floats(rng, 5000), floats(rng, 5000)

    def run():
        y, argmax = ops.maxpool2d_forward(x, 3, 2)
        avg = ops.avgpool2d_forward(x, 3, 2)
        lrn = ops.lrn_forward(x)
        relu = ops.relu_forward(x)
        dropped, mask = ops.dropout_forward(x, 0.5, seed=9)
        loss, probs = ops.softmax_cross_entropy(logits, labels)
        w1, v1 = w.copy(), v.copy()
        ops.sgd_momentum_update(w1, dw, v1, 0.01)
        return [y, argmax, ops.maxpool2d_backward(dy_pool, argmax, x.shape), avg,
                ops.avgpool2d_backward(dy_pool, x.shape, 3, 2), *lrn, ops.lrn_backward(x, *lrn, x),
                relu, ops.relu_backward(relu, x), dropped, mask, ops.dropout_backward(x, mask),
                np.float32(loss), probs, ops.softmax_cross_entropy_backward(probs, labels), w1, v1,
                np.bool_(ops.all_finite(x))]  # fmt: skip

    assert_same_with_one_and_two_threads(run)


def test_resume_with_another_workers_count_equals_an_uninterrupted_run(tmp_path):
    """Steps 1-2 on 2 threads, then resumed on 1 thread for step 3, against all 3 on 1 thread."""
    data = write_learnable_shards(tmp_path / "shards", 12, 2, shard_size=5)
    common = ["--epochs", "1", "--lr", "0.02"]
    clean, moved = tmp_path / "clean", tmp_path / "moved"
    saved = numba.get_num_threads()
    try:
        assert main(train_args(data, clean, *common, "--workers", "1")) == 0
        assert main(train_args(data, moved, *common, "--workers", "2", "--max-steps", "2")) == 0
        assert ck.load_checkpoint(moved / "latest.h5").step == 2
        assert main(train_args(data, moved, *common, "--workers", "1")) == 0
    finally:
        numba.set_num_threads(saved)
    a, b = ck.load_checkpoint(clean / "latest.h5"), ck.load_checkpoint(moved / "latest.h5")
    assert a.step == b.step == 3
    for group in ("params", "momentum"):
        for name, value in getattr(a, group).items():
            np.testing.assert_array_equal(getattr(b, group)[name], value, err_msg=f"{group}/{name}")
    losses = [[r["train_loss"] for r in read_records(run) if r["kind"] == "step"] for run in (clean, moved)]
    assert losses[0] == losses[1]
