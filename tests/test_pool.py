"""Max and average pooling: forward against float64 loops (tests/refs: overlapping 3/2,
non-overlapping 2/2, odd sizes; NaN, ties and signed zeros for max-pool, where the kernels' own
reference loops are checked against them too), backward by central differences (distinct inputs,
so no max-pool kink is crossed), determinism, validation."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import avgpool2d as avg_ref
from refs import maxpool2d as max_ref

import refnet.ops as ops
from refnet.kernels.cpu import maxpool2d as max_kernels

# (shape, size, stride): overlapping, non-overlapping, ragged edges, stride > size, one output.
CASES = [
    ((2, 3, 9, 11), 3, 2),
    ((1, 2, 8, 6), 2, 2),
    ((2, 1, 7, 13), 3, 3),
    ((1, 3, 10, 9), 2, 3),
    ((1, 1, 5, 4), 4, 1),
    ((1, 2, 3, 3), 3, 2),
]


def distinct_values(rng, shape):
    """A permutation of well-separated values: no ties, and no +-eps step changes a window's max."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0).astype(np.float32)


def pooled_poison(x, size, stride):
    N, C, H, W = x.shape
    shape = (N, C, (H - size) // stride + 1, (W - size) // stride + 1)
    return shape, poisoned(shape), poisoned(shape, np.int32)


@pytest.mark.parametrize("shape, size, stride", CASES)
def test_maxpool_forward_matches_reference(rng, shape, size, stride):
    x = rng.standard_normal(shape).astype(np.float32)
    _, y_out, argmax_out = pooled_poison(x, size, stride)
    y, argmax = ops.maxpool2d_forward(x, size, stride, out=(y_out, argmax_out))
    assert_all_written(y, "y")
    assert_all_written(argmax, "argmax")
    y_ref, argmax_ref = max_ref.maxpool2d_forward(x.astype(np.float64), size, stride)
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))
    np.testing.assert_array_equal(argmax, argmax_ref)


def oracle(x, size, stride):
    """tests/refs' float64 loops, as the kernels' float32 y (NaN and the sign of 0 kept) and int32 argmax."""
    y, argmax = max_ref.maxpool2d_forward(x.astype(np.float64), size, stride)
    return y.astype(np.float32), argmax.astype(np.int32)


def assert_same_pooling(y, argmax, y_ref, argmax_ref):
    np.testing.assert_array_equal(y.view(np.int32), y_ref.view(np.int32))  # bits: the sign of 0, NaN
    np.testing.assert_array_equal(argmax, argmax_ref)


def small_value_set(rng, shape):
    """Values from {-1, -0.0, 0, 1, NaN}: most windows hold ties between +0 and -0 (equal, but the
    first one must win and its sign must survive) and several NaNs (the first in row-major order
    must win)."""
    values = np.array([-1.0, -0.0, 0.0, 1.0, np.nan], np.float32)
    return values[rng.choice(5, size=shape, p=[0.2, 0.3, 0.3, 0.15, 0.05])]


@pytest.mark.parametrize("shape, size, stride", CASES)
def test_kernels_reference_loops_match_the_float64_loops(rng, shape, size, stride):
    """maxpool2d_forward_reference, the definition the kernel file documents, against tests/refs."""
    x = small_value_set(rng, shape)
    x[0, 0, 0, 0] = np.nan
    _, y, argmax = pooled_poison(x, size, stride)
    max_kernels.maxpool2d_forward_reference(y, argmax, x, size, stride)
    assert_same_pooling(y, argmax, *oracle(x, size, stride))


@pytest.mark.parametrize("shape, size, stride", CASES[:3])
def test_maxpool_fast_kernel_with_nan_and_ties_matches_the_float64_loops(rng, shape, size, stride):
    # Rounded values make ties common, so the tie rule is exercised too.
    x = np.round(rng.standard_normal(shape)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    y, argmax = ops.maxpool2d_forward(x, size, stride)
    assert_same_pooling(y, argmax, *oracle(x, size, stride))


@pytest.mark.parametrize("size, stride", [(3, 2), (2, 2)])
def test_wide_planes_match_reference(rng, size, stride):
    # Rows wide enough (Q >= 16) that a row of outputs takes more than one vector of 16.
    x = np.round(rng.standard_normal((1, 2, 7, 41)) * 2).astype(np.float32)
    y, argmax = ops.maxpool2d_forward(x, size, stride)
    assert_same_pooling(y, argmax, *oracle(x, size, stride))
    mean = ops.avgpool2d_forward(x, size, stride)
    np.testing.assert_allclose(mean, avg_ref.avgpool2d_forward(x.astype(np.float64), size, stride), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_stride2_kernel_with_nans_and_ties_matches_reference(rng, size):
    # The vector kernel (stride 2) on windows holding one NaN, two NaNs (the first wins), a NaN in
    # the first position, and many ties; 37 columns give a second, partial vector of 16 outputs.
    x = np.round(rng.standard_normal((2, 3, 11, 37))).astype(np.float32)
    x[0, 0, 0, 0] = x[0, 1, 4, 7] = x[0, 1, 4, 8] = x[1, 2, 5, 30] = x[1, 2, 6, 36] = np.nan
    y, argmax = ops.maxpool2d_forward(x, size, 2)
    assert_same_pooling(y, argmax, *oracle(x, size, 2))


# Shapes: two planes per vector with an odd plane count (Q <= 8), one row per vector (8 < Q <= 16),
# two vectors per row with a partial one (Q > 16), planes of P*Q == 8 outputs at the 3x3 window
# (two planes' outputs 8 apart, but not filling 8 lanes), a 3-wide plane (windows 2 and 3 only),
# and 34 and 33 planes: several parallel tasks of 16 planes, whose rows' last vectors write on into
# the next plane's first row inside a task but not across tasks.
SMALL_VALUE_SHAPES = [(1, 3, 13, 13), (2, 1, 9, 17), (1, 2, 27, 27), (1, 1, 12, 40), (2, 3, 5, 9), (2, 3, 9, 5),
                      (1, 3, 17, 3), (2, 17, 9, 21), (1, 33, 7, 37)]  # fmt: skip
SMALL_VALUE_CASES = [(shape, size) for shape in SMALL_VALUE_SHAPES for size in (2, 3, 4, 5)
                     if size <= min(shape[2], shape[3])]  # fmt: skip


@pytest.mark.parametrize("shape, size", SMALL_VALUE_CASES)
def test_stride2_kernel_is_bit_identical_to_reference_on_small_value_sets(rng, shape, size):
    x = small_value_set(rng, shape)
    y, argmax = ops.maxpool2d_forward(x, size, 2)
    assert_same_pooling(y, argmax, *oracle(x, size, 2))


@pytest.mark.parametrize("size, W", [(2, 39), (3, 38), (5, 40)])
def test_stride2_kernel_ignores_values_outside_every_window(rng, size, W):
    # The vector kernels load whole vectors past a row's end (into the next rows and planes) for
    # the outputs past it; no output inside may see those values. At these widths the last
    # column is in no window: NaN there (and a huge value) must not reach y or argmax.
    x = rng.standard_normal((3, 7, 9, W)).astype(np.float32)
    x[..., -1] = np.nan
    x[0, 0, 1, -1] = 1e30
    y, argmax = ops.maxpool2d_forward(x, size, 2)
    assert not np.isnan(y).any()
    assert_same_pooling(y, argmax, *oracle(x, size, 2))


def test_maxpool_ties_go_to_first_in_row_major_order():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 0] = x[0, 0, 0, 2] = x[0, 0, 2, 2] = 5.0
    y, argmax = ops.maxpool2d_forward(x, 3, 1)
    assert y[0, 0, 0, 0] == 5.0 and argmax[0, 0, 0, 0] == 0 * 3 + 2


def test_maxpool_propagates_nan():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 2, 1] = np.nan
    x[0, 0, 0, 0] = 9.0
    y, argmax = ops.maxpool2d_forward(x, 3, 1)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 2 * 3 + 1


@pytest.mark.parametrize("shape, size, stride", CASES[:4])
def test_maxpool_backward_matches_central_differences(rng, shape, size, stride):
    x = distinct_values(rng, shape)
    y, argmax = ops.maxpool2d_forward(x, size, stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool2d_backward(dy, argmax, x.shape, out=poisoned(x.shape))
    assert_all_written(dx)
    loss = lambda v: float((max_ref.maxpool2d_forward(v, size, stride)[0] * dy).sum())
    numeric = numerical_gradient(loss, x.astype(np.float64))
    assert_gradients_close(dx, numeric, rtol=1e-5, atol=1e-6)


def test_maxpool_backward_sums_where_windows_overlap():
    # The centre of a 5x5 plane wins all four overlapping 3x3/2 windows.
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 1.0
    y, argmax = ops.maxpool2d_forward(x, 3, 2)
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    dx = ops.maxpool2d_backward(dy, argmax, x.shape)
    assert dx[0, 0, 2, 2] == 10.0 and dx.sum() == 10.0


def test_maxpool_backward_is_deterministic(rng):
    x = np.round(rng.standard_normal((4, 8, 15, 15)) * 2).astype(np.float32)
    y, argmax = ops.maxpool2d_forward(x, 3, 2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    first = ops.maxpool2d_backward(dy, argmax, x.shape)
    np.testing.assert_array_equal(first, ops.maxpool2d_backward(dy, argmax, x.shape))


@pytest.mark.parametrize("shape, size, stride", CASES)
def test_avgpool_forward_matches_reference(rng, shape, size, stride):
    x = rng.standard_normal(shape).astype(np.float32)
    out_shape, y_out, _ = pooled_poison(x, size, stride)
    y = ops.avgpool2d_forward(x, size, stride, out=y_out)
    assert_all_written(y)
    np.testing.assert_allclose(y, avg_ref.avgpool2d_forward(x.astype(np.float64), size, stride), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, size, stride", CASES)
def test_avgpool_backward_matches_central_differences(rng, shape, size, stride):
    x = rng.standard_normal(shape).astype(np.float32)
    y = ops.avgpool2d_forward(x, size, stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.avgpool2d_backward(dy, x.shape, size, stride, out=poisoned(x.shape))
    assert_all_written(dx)
    loss = lambda v: float((avg_ref.avgpool2d_forward(v, size, stride) * dy).sum())
    numeric = numerical_gradient(loss, x.astype(np.float64))
    assert_gradients_close(dx, numeric, rtol=1e-5, atol=1e-6)


X = np.zeros((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize("pool", [ops.maxpool2d_forward, ops.avgpool2d_forward])
@pytest.mark.parametrize(
    "x, size, stride, name",
    [
        (np.zeros((2, 6, 6), np.float32), 3, 2, "x"),
        (X.astype(np.float64), 3, 2, "x"),
        (np.zeros((1, 2, 6, 12), np.float32)[..., ::2], 3, 2, "x"),
        (X, 0, 2, "size"),
        (X, 2.0, 2, "size"),
        (X, 7, 1, "size"),
        (X, 3, 0, "stride"),
    ],
)
def test_pool_forward_rejects_bad_argument(pool, x, size, stride, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        pool(x, size, stride)


def test_maxpool_forward_rejects_out_that_is_not_a_pair():
    with pytest.raises(ValueError, match=r"^out: expected a pair \(y, argmax\)"):
        ops.maxpool2d_forward(X, 3, 2, out=np.zeros((1, 2, 2, 2), np.float32))


def test_maxpool_forward_rejects_wrong_out():
    with pytest.raises(ValueError, match=r"^out\[1\] \(argmax\): expected dtype int32"):
        ops.maxpool2d_forward(X, 3, 2, out=(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.int64)))


DY = np.zeros((1, 2, 2, 2), np.float32)
ARGMAX = np.zeros((1, 2, 2, 2), np.int32)


@pytest.mark.parametrize(
    "dy, argmax, input_shape, name",
    [
        (DY[0], ARGMAX, (1, 2, 6, 6), "dy"),
        (DY, ARGMAX.astype(np.int64), (1, 2, 6, 6), "argmax"),
        (DY, ARGMAX[:, :1], (1, 2, 6, 6), "argmax"),
        (DY, ARGMAX, (1, 2, 6), "input_shape"),
        (DY, ARGMAX, (1, 2, 6.0, 6), "input_shape"),
        (DY, ARGMAX, (1, 3, 6, 6), "input_shape"),
        (DY, ARGMAX + 36, (1, 2, 6, 6), "argmax"),
        (DY, ARGMAX - 1, (1, 2, 6, 6), "argmax"),
    ],
)
def test_maxpool_backward_rejects_bad_argument(dy, argmax, input_shape, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.maxpool2d_backward(dy, argmax, input_shape)


@pytest.mark.parametrize(
    "dy, input_shape, size, stride, name",
    [
        (DY, (1, 2, 6, 6), 2, 2, "dy"),  # 6x6 pools to 3x3 with 2/2, not to dy's 2x2
        (DY, (1, 2, 1, 6), 3, 2, "size"),
        (DY, [1, 2, 6], 3, 2, "input_shape"),
        (DY, (1, 2, 6, 6), 3, 0, "stride"),
    ],
)
def test_avgpool_backward_rejects_bad_argument(dy, input_shape, size, stride, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        ops.avgpool2d_backward(dy, input_shape, size, stride)
