"""Fully connected layer: forward against a float64 loop reference, backward by central differences,
the GEMM-based kernels against the plain loops, poisoned outputs, determinism, validation."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import gemm as ref

import refnet.ops as ops
from refnet.kernels.cpu import linear as kernels


def layer(rng, N, IN, OUT):
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("N, IN, OUT", [(1, 1, 1), (3, 5, 7), (4, 37, 11)])
def test_forward_matches_reference(rng, N, IN, OUT):
    x, w, b = layer(rng, N, IN, OUT)
    y = ops.linear_forward(x, w, b, out=poisoned((N, OUT)))
    assert_all_written(y)
    np.testing.assert_allclose(y, ref.linear_forward(x, w, b), rtol=1e-5, atol=1e-5)


def test_backward_matches_central_differences(rng):
    N, IN, OUT = 3, 5, 4
    x, w, b = layer(rng, N, IN, OUT)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    out = (poisoned((N, IN)), poisoned((OUT, IN)), poisoned(OUT))
    dx, dw, db = ops.linear_backward(x, w, dy, out=out)
    for name, g in zip(("dx", "dw", "db"), (dx, dw, db)):
        assert_all_written(g, name)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    loss = lambda xx, ww, bb: float((ref.linear_forward(xx, ww, bb) * dy).sum())
    assert_gradients_close(dx, numerical_gradient(lambda v: loss(v, w64, b64), x64), name="dx")
    assert_gradients_close(dw, numerical_gradient(lambda v: loss(x64, v, b64), w64), name="dw")
    assert_gradients_close(db, numerical_gradient(lambda v: loss(x64, w64, v), b64), name="db")


@pytest.mark.parametrize("N, IN, OUT", [(37, 300, 263), (130, 530, 9)])
def test_gemm_kernels_match_plain_loops(rng, N, IN, OUT):
    x, w, b = layer(rng, N, IN, OUT)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    fast = [poisoned((N, OUT)), poisoned((N, IN)), poisoned((OUT, IN)), poisoned(OUT)]
    naive = [poisoned((N, OUT)), poisoned((N, IN)), poisoned((OUT, IN)), poisoned(OUT)]
    kernels.linear_forward(fast[0], x, w, b)
    kernels.linear_backward(*fast[1:], x, w, dy)
    kernels.linear_forward_naive(naive[0], x, w, b)
    kernels.linear_backward_naive(*naive[1:], x, w, dy)
    for name, f, s, K in zip(("y", "dx", "dw", "db"), fast, naive, (IN, OUT, N, N)):
        assert_all_written(f, name)
        np.testing.assert_allclose(f, s, rtol=1e-4, atol=1e-4 * np.sqrt(K), err_msg=name)


@pytest.mark.parametrize("N", [1, 32])
def test_weight_gradient_of_a_short_batch_matches_float64(rng, N):
    # dw = dy.T @ x with the batch as K (one K slice: the packed GEMM's row-by-row order); 263 x 300
    # crosses its row and column blocks, and no tile divides it.
    IN, OUT = 300, 263
    x, w, _ = layer(rng, N, IN, OUT)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    dw = poisoned((OUT, IN))
    kernels.linear_backward(None, dw, poisoned(OUT), x, w, dy)
    assert_all_written(dw, "dw")
    want = sum(np.multiply.outer(dy[n].astype(np.float64), x[n].astype(np.float64)) for n in range(N))
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5 * np.sqrt(N))


def test_backward_without_dx(rng):
    x, w, b = layer(rng, 3, 6, 5)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    dx, dw, db = ops.linear_backward(x, w, dy, need_dx=False, out=(None, poisoned((5, 6)), poisoned(5)))
    assert dx is None
    _, dw_full, db_full = ops.linear_backward(x, w, dy)
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


def test_is_deterministic(rng):
    x, w, b = layer(rng, 33, 700, 70)
    dy = rng.standard_normal((33, 70)).astype(np.float32)
    first = (ops.linear_forward(x, w, b),) + ops.linear_backward(x, w, dy)
    second = (ops.linear_forward(x, w, b),) + ops.linear_backward(x, w, dy)
    for f, s in zip(first, second):
        np.testing.assert_array_equal(f, s)


def test_rejects_wrong_dtype():
    with pytest.raises(ValueError, match=r"^w: expected dtype float32"):
        ops.linear_forward(np.zeros((2, 3), np.float32), np.zeros((4, 3)), np.zeros(4, np.float32))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"^x: expected a 2-D array"):
        ops.linear_forward(np.zeros((2, 3, 1), np.float32), np.zeros((4, 3), np.float32), np.zeros(4, np.float32))


def test_rejects_non_contiguous():
    with pytest.raises(ValueError, match=r"^x: expected a C-contiguous"):
        ops.linear_forward(np.zeros((2, 6), np.float32)[:, ::2], np.zeros((4, 3), np.float32), np.zeros(4, np.float32))


def test_rejects_mismatched_weight_columns():
    with pytest.raises(ValueError, match=r"^w: expected \(OUT, IN\) with IN = 3"):
        ops.linear_forward(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), np.zeros(4, np.float32))


def test_rejects_wrong_bias_length():
    with pytest.raises(ValueError, match=r"^b: expected shape \(4,\)"):
        ops.linear_forward(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros(5, np.float32))


def test_rejects_wrong_dy_shape():
    with pytest.raises(ValueError, match=r"^dy: expected shape \(2, 4\)"):
        ops.linear_backward(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 5), np.float32))


def test_rejects_wrong_out_shape():
    with pytest.raises(ValueError, match=r"^out: expected shape \(2, 4\)"):
        ops.linear_forward(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros(4, np.float32),
                           out=np.zeros((4, 2), np.float32))


def test_rejects_wrong_gradient_out_dtype():
    x, w, dy = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out\[1\] \(dw\): expected dtype float32"):
        ops.linear_backward(x, w, dy, out=(None, np.zeros((4, 3)), None))


def test_rejects_dx_out_when_not_needed():
    x, w, dy = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out\[0\] \(dx\): expected None"):
        ops.linear_backward(x, w, dy, need_dx=False, out=(np.zeros((2, 3), np.float32), None, None))


def test_rejects_non_bool_need_dx():
    x, w, dy = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^need_dx: expected a bool"):
        ops.linear_backward(x, w, dy, need_dx="no")


def test_rejects_out_that_is_not_a_triple():
    x, w, dy = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out: expected a tuple \(dx, dw, db\)"):
        ops.linear_backward(x, w, dy, out=(None, None))
