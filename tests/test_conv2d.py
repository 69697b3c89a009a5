"""2-D convolution: forward against a float64 loop reference, backward by central differences, the
im2col + GEMM and Winograd kernels against the direct loop nests, poisoned outputs, determinism,
validation."""

import numpy as np
import pytest
from gradcheck import assert_gradients_close, numerical_gradient
from poison import assert_all_written, poisoned
from refs import conv2d as ref

import refnet.ops as ops
from refnet.kernels.cpu import conv2d as kernels

# (N, C, H, W, K, R, S, stride, pad, groups): odd sizes, stride > 1, padding, groups, 1x1 filters,
# a filter as large as the padded input, a stride larger than the filter.
GEOMETRIES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0, 1),
    (2, 4, 9, 8, 6, 3, 3, 2, 1, 2),
    (1, 3, 11, 10, 4, 5, 5, 3, 2, 1),
    (2, 6, 5, 6, 4, 1, 1, 1, 0, 2),
    (1, 2, 3, 3, 3, 5, 5, 1, 1, 1),
    (1, 2, 8, 7, 2, 2, 2, 3, 0, 1),
]


def layer(rng, N, C, H, W, K, R, S, groups):
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // groups, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    return x, w, b


def out_shape(N, H, W, K, R, S, stride, pad):
    return (N, K, ref.output_size(H, R, stride, pad), ref.output_size(W, S, stride, pad))


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", GEOMETRIES)
def test_forward_matches_reference(rng, N, C, H, W, K, R, S, stride, pad, groups):
    x, w, b = layer(rng, N, C, H, W, K, R, S, groups)
    shape = out_shape(N, H, W, K, R, S, stride, pad)
    y = ops.conv2d_forward(x, w, b, stride, pad, groups, out=poisoned(shape))
    assert_all_written(y)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, stride, pad, groups), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", GEOMETRIES[:4])
def test_backward_matches_central_differences(rng, N, C, H, W, K, R, S, stride, pad, groups):
    x, w, b = layer(rng, N, C, H, W, K, R, S, groups)
    shape = out_shape(N, H, W, K, R, S, stride, pad)
    dy = rng.standard_normal(shape).astype(np.float32)
    out = (poisoned(x.shape), poisoned(w.shape), poisoned(b.shape))
    dx, dw, db = ops.conv2d_backward(x, w, dy, stride, pad, groups, out=out)
    for name, g in zip(("dx", "dw", "db"), (dx, dw, db)):
        assert_all_written(g, name)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    loss = lambda xx, ww, bb: float((ref.conv2d_forward(xx, ww, bb, stride, pad, groups) * dy).sum())
    # A sample of entries (every padding border and group is hit by some of them) keeps this fast.
    pick = lambda a: rng.choice(a.size, size=min(a.size, 24), replace=False)
    ix, iw = pick(x), pick(w)
    numeric_dx = numerical_gradient(lambda v: loss(v, w64, b64), x64, indices=ix)
    numeric_dw = numerical_gradient(lambda v: loss(x64, v, b64), w64, indices=iw)
    numeric_db = numerical_gradient(lambda v: loss(x64, w64, v), b64)
    assert_gradients_close(dx.reshape(-1)[ix], numeric_dx.reshape(-1)[ix], name="dx")
    assert_gradients_close(dw.reshape(-1)[iw], numeric_dw.reshape(-1)[iw], name="dw")
    assert_gradients_close(db, numeric_db, name="db")


# conv1-like (11x11 stride 4), conv2-like (5x5 pad 2, groups 2) and conv3-like (3x3 pad 1) shapes,
# small enough for the direct loops, large enough to cross the GEMM's tile edges.
@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", [
    (2, 3, 39, 37, 10, 11, 11, 4, 0, 1),
    (2, 8, 13, 13, 12, 5, 5, 1, 2, 2),
    (3, 30, 7, 7, 37, 3, 3, 1, 1, 1),
])
def test_gemm_kernels_match_direct_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _fast_against_direct(rng, kernels.conv2d_forward, kernels.conv2d_backward, N, C, H, W, K, R, S, stride, pad, groups)


def _fast_against_direct(rng, forward, backward, N, C, H, W, K, R, S, stride, pad, groups):
    x, w, b = layer(rng, N, C, H, W, K, R, S, groups)
    shape = out_shape(N, H, W, K, R, S, stride, pad)
    dy = rng.standard_normal(shape).astype(np.float32)
    fast = [poisoned(shape), poisoned(x.shape), poisoned(w.shape), poisoned(b.shape)]
    direct = [poisoned(shape), poisoned(x.shape), poisoned(w.shape), poisoned(b.shape)]
    forward(fast[0], x, w, b, stride, pad, groups)
    backward(*fast[1:], x, w, dy, stride, pad, groups)
    kernels.conv2d_forward_direct(direct[0], x, w, b, stride, pad, groups)
    kernels.conv2d_backward_direct(*direct[1:], x, w, dy, stride, pad, groups)
    assert_close_to(fast, direct, N, C, K, R, S, groups, shape)


def assert_close_to(outputs, expected, N, C, K, R, S, groups, shape):
    """y, dx, dw, db all written and within float32 rounding of `expected` (tolerance growing with
    the number of terms summed)."""
    reduction = (C // groups * R * S, K // groups * R * S, N * shape[2] * shape[3], N * shape[2] * shape[3])
    for name, f, d, n_terms in zip(("y", "dx", "dw", "db"), outputs, expected, reduction):
        assert_all_written(f, name)
        np.testing.assert_allclose(f, d, rtol=1e-4, atol=1e-4 * np.sqrt(n_terms), err_msg=name)


def _against_float64_loops(rng, forward, backward, N, C, H, W, K, R, S, stride, pad, groups):
    x, w, b = layer(rng, N, C, H, W, K, R, S, groups)
    shape = out_shape(N, H, W, K, R, S, stride, pad)
    dy = rng.standard_normal(shape).astype(np.float32)
    outputs = [poisoned(shape), poisoned(x.shape), poisoned(w.shape), poisoned(b.shape)]
    forward(outputs[0], x, w, b, stride, pad, groups)
    backward(*outputs[1:], x, w, dy, stride, pad, groups)
    expected = [ref.conv2d_forward(x, w, b, stride, pad, groups), *ref.conv2d_backward(x, w, dy, stride, pad, groups)]
    assert_close_to(outputs, expected, N, C, K, R, S, groups, shape)


# 3x3 and 5x5 stride 1 go to the Winograd kernels: odd and even outputs (half-empty edge tiles),
# every padding, groups, an output of one pixel, chunks of several images. Pad 3 with 3x3 and pad 5
# with 5x5 (the backward's padding negative) are held to tests/refs' float64 loops below.
WINOGRAD_GEOMETRIES = [
    GEOMETRIES[0],
    (2, 4, 8, 9, 6, 3, 3, 1, 1, 2),
    (1, 3, 5, 6, 5, 3, 3, 1, 2, 1),
    (1, 2, 3, 3, 2, 3, 3, 1, 0, 2),
    (9, 5, 13, 13, 7, 3, 3, 1, 1, 1),
    (2, 3, 9, 8, 4, 5, 5, 1, 2, 1),
    (1, 4, 7, 6, 6, 5, 5, 1, 0, 2),
    (3, 6, 27, 27, 5, 5, 5, 1, 2, 1),
]


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", WINOGRAD_GEOMETRIES)
def test_winograd_kernels_match_direct_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _fast_against_direct(rng, kernels.conv2d_forward_winograd, kernels.conv2d_backward_winograd,
                         N, C, H, W, K, R, S, stride, pad, groups)


# Padding past the filter: the backward data pass runs at padding R - 1 - pad < 0.
PADDING_PAST_THE_FILTER = [(2, 2, 4, 5, 3, 3, 3, 1, 3, 1), (2, 2, 5, 5, 3, 5, 5, 1, 5, 1)]


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", PADDING_PAST_THE_FILTER)
def test_winograd_with_padding_past_the_filter_matches_float64_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _against_float64_loops(rng, kernels.conv2d_forward_winograd, kernels.conv2d_backward_winograd,
                           N, C, H, W, K, R, S, stride, pad, groups)


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups",
                         [(2, 4, 9, 8, 6, 3, 2, 2, 1, 2), (1, 3, 7, 7, 2, 5, 5, 1, 5, 1)])
def test_direct_loops_match_float64_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    """The implementation's own reference (conv2d_*_direct), that the fast kernels are held to,
    against tests/refs once: stride, groups, a non-square filter, padding past the filter."""
    _against_float64_loops(rng, kernels.conv2d_forward_direct, kernels.conv2d_backward_direct,
                           N, C, H, W, K, R, S, stride, pad, groups)


def test_winograd_is_chosen_only_for_what_its_kernels_compute():
    """Whatever the speed thresholds, the Winograd kernels take 3x3 and 5x5 stride-1 filters only."""
    for N in (1, 8, 32):
        for R in (1, 2, 3, 4, 5, 7, 11):
            for stride in (1, 2, 4):
                for P in (1, 3, 7, 13, 27, 55):
                    if kernels.winograd_applies(np.empty((8, 4, R, R)), stride, (N, 8, P, P)):
                        assert stride == 1 and R in (3, 5), (N, R, stride, P)


# Around the small-output and Winograd thresholds in output size and batch: the dispatcher's
# choice, whichever it is, gives the direct loops' result.
DISPATCH_GEOMETRIES = [(N, 3, P, P, 4, R, R, 1, R // 2, 1) for R in (3, 5) for P in (3, 5, 6, 7, 9) for N in (1, 16)]


def test_dispatch_geometries_reach_the_small_and_winograd_paths():
    chosen = {kernels.conv_path(np.empty((K, C, R, S)), stride, (N, K, H, W))
              for N, C, H, W, K, R, S, stride, pad, groups in DISPATCH_GEOMETRIES}
    assert {"small", "winograd"} <= chosen


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", DISPATCH_GEOMETRIES)
def test_every_dispatch_choice_matches_direct_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _fast_against_direct(rng, kernels.conv2d_forward, kernels.conv2d_backward, N, C, H, W, K, R, S, stride, pad, groups)


# Chunks of at least PACKED_DW_MAX_COLUMNS output pixels take the dot-product GEMM for dw, the
# smaller ones (every geometry above) the packed one.
LONG_CHUNK_GEOMETRIES = [(3, 3, 21, 19, 4, 3, 3, 1, 1, 1), (2, 4, 40, 36, 4, 4, 4, 2, 1, 2)]


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups",
                         WINOGRAD_GEOMETRIES[:3] + GEOMETRIES + LONG_CHUNK_GEOMETRIES)
def test_im2col_kernels_match_direct_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    # Still the path of every other geometry, and callable for 3x3 stride 1 too.
    _fast_against_direct(rng, kernels.conv2d_forward_im2col, kernels.conv2d_backward_im2col,
                         N, C, H, W, K, R, S, stride, pad, groups)


# The small-output path (stride 1): AlexNet's 3x3 maps with padding 1 (corner, edge and centre
# positions touch 4, 6 and 9 taps), groups, 5x5 filters, a 1x1 filter with padding (positions that
# touch no tap: bias only), more output channels than one task's block, an output of one pixel,
# channel counts that fill the filter re-layout's 16 x 16 register blocks, whole and with edges.
SMALL_GEOMETRIES = [
    (3, 5, 3, 3, 7, 3, 3, 1, 1, 1),
    (2, 4, 3, 3, 6, 3, 3, 1, 1, 2),
    (2, 3, 4, 5, 4, 3, 3, 1, 1, 1),
    (2, 3, 5, 5, 5, 5, 5, 1, 2, 1),
    (2, 3, 3, 3, 4, 1, 1, 1, 1, 1),
    (2, 6, 3, 3, 130, 3, 3, 1, 1, 2),
    (1, 2, 3, 3, 3, 3, 3, 1, 0, 1),
    (2, 32, 3, 3, 48, 3, 3, 1, 1, 1),
    (2, 34, 3, 3, 40, 3, 3, 1, 1, 2),
]


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", SMALL_GEOMETRIES)
def test_small_output_kernels_match_direct_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _fast_against_direct(rng, kernels.conv2d_forward_small, kernels.conv2d_backward_small,
                         N, C, H, W, K, R, S, stride, pad, groups)


# The gather path (x read in place by the filter taps): conv1's 11x11 stride 4 on 3 channels with
# tap counts that leave a partial 6-row tile (363, 147, 50, 9), output channels that leave a
# partial 16-lane block (10, 20, 3), padding, groups, stride 2, and one geometry of 625 output
# pixels per image (two bands each: 6 chunks summed in 3 parts of 2).
GATHER_GEOMETRIES = [
    (2, 3, 27, 31, 10, 11, 11, 4, 0, 1),
    (1, 3, 23, 19, 20, 7, 7, 4, 2, 1),
    (2, 4, 17, 15, 6, 5, 5, 4, 1, 2),
    (3, 1, 99, 97, 3, 3, 3, 4, 1, 1),
    (2, 2, 11, 10, 7, 3, 3, 2, 1, 1),
]


@pytest.mark.parametrize("N, C, H, W, K, R, S, stride, pad, groups", GATHER_GEOMETRIES)
def test_gather_kernels_match_float64_loops(rng, N, C, H, W, K, R, S, stride, pad, groups):
    _against_float64_loops(rng, kernels.conv2d_forward_gather, kernels.conv2d_backward_gather,
                           N, C, H, W, K, R, S, stride, pad, groups)


def test_gather_geometries_cross_bands_and_parts():
    from refnet.kernels.cpu import conv2d_gather

    N, C, H, W, K, R, S, stride, pad, groups = GATHER_GEOMETRIES[3]
    P = Q = (H + 2 * pad - R) // stride + 1
    assert P * Q > conv2d_gather.BAND_PIXELS and N * ((P + conv2d_gather.band_rows_for(Q) - 1)
                                                      // conv2d_gather.band_rows_for(Q)) == 6


def test_gather_kernels_do_not_depend_on_the_threads(rng):
    N, C, H, W, K, R, S, stride, pad, groups = GATHER_GEOMETRIES[3]
    x, w, b = layer(rng, N, C, H, W, K, R, S, groups)
    dy = rng.standard_normal(out_shape(N, H, W, K, R, S, stride, pad)).astype(np.float32)
    _same_alone_and_threaded(_run_layer(kernels.conv2d_forward_gather, kernels.conv2d_backward_gather,
                                        x, w, b, dy, pad, groups, stride))


@pytest.mark.parametrize("N, K, Cg, R, stride, P, expected", [
    (32, 384, 256, 3, 1, 3, "small"),     # conv3-5 at 67
    (32, 256, 48, 5, 1, 7, "small"),      # conv2 at 67 (paper variant)
    (32, 256, 96, 5, 1, 9, "winograd"),   # conv2 at 9x9 maps
    (32, 384, 384, 3, 1, 5, "small"),     # conv3-5 at 5x5 maps
    (32, 384, 256, 3, 1, 13, "winograd"), # conv3-5 at 227
    (32, 96, 3, 11, 4, 15, "gather"),     # conv1 at 67
    (32, 96, 3, 11, 4, 55, "gather"),     # conv1 at 227
    (32, 64, 256, 3, 2, 3, "im2col"),     # stride 2, many taps
])
def test_each_layer_takes_the_path_measured_fastest(N, K, Cg, R, stride, P, expected):
    assert kernels.conv_path(np.empty((K, Cg, R, R)), stride, (N, K, P, P)) == expected


def test_small_output_kernels_do_not_depend_on_the_threads(rng):
    x, w, b = layer(rng, 5, 6, 3, 3, 130, 3, 3, 2)
    dy = rng.standard_normal((5, 130, 3, 3)).astype(np.float32)
    _same_alone_and_threaded(_run_layer(kernels.conv2d_forward_small, kernels.conv2d_backward_small,
                                        x, w, b, dy, 1, 2))


def test_long_chunk_geometries_reach_the_dot_product_weight_gradient():
    for N, C, H, W, K, R, S, stride, pad, groups in LONG_CHUNK_GEOMETRIES:
        P = (H + 2 * pad - R) // stride + 1
        Q = (W + 2 * pad - S) // stride + 1
        images, _ = kernels._chunking(N, P * Q)
        assert images * P * Q >= kernels.PACKED_DW_MAX_COLUMNS


def _same_alone_and_threaded(run):
    """run() on one thread and on the default threads: bit-identical results."""
    import numba

    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        alone = run()
    finally:
        numba.set_num_threads(threads)
    for first, second, third in zip(alone, run(), run()):
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(second, third)


def _run_layer(forward, backward, x, w, b, dy, pad, groups, stride=1):
    def run():
        y = np.empty(dy.shape, np.float32)
        grads = [np.empty(x.shape, np.float32), np.empty(w.shape, np.float32), np.empty(w.shape[0], np.float32)]
        forward(y, x, w, b, stride, pad, groups)
        backward(*grads, x, w, dy, stride, pad, groups)
        return [y] + grads
    return run


def test_winograd_does_not_depend_on_the_threads(rng):
    x, w, b = layer(rng, 9, 6, 13, 13, 8, 3, 3, 2)
    dy = rng.standard_normal((9, 8, 13, 13)).astype(np.float32)
    _same_alone_and_threaded(_run_layer(kernels.conv2d_forward_winograd, kernels.conv2d_backward_winograd,
                                        x, w, b, dy, 1, 2))


def test_backward_without_dx(rng):
    x, w, b = layer(rng, 2, 3, 9, 9, 4, 3, 3, 1)
    dy = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(x, w, dy, stride=2, need_dx=False, out=(None, poisoned(w.shape), poisoned(4)))
    assert dx is None
    _, dw_full, db_full = ops.conv2d_backward(x, w, dy, stride=2)
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


def test_is_deterministic(rng):
    x, w, b = layer(rng, 3, 8, 15, 15, 40, 3, 3, 2)
    y1 = ops.conv2d_forward(x, w, b, pad=1, groups=2)
    y2 = ops.conv2d_forward(x, w, b, pad=1, groups=2)
    np.testing.assert_array_equal(y1, y2)
    for first, second in zip(ops.conv2d_backward(x, w, y1, pad=1, groups=2), ops.conv2d_backward(x, w, y1, pad=1, groups=2)):
        np.testing.assert_array_equal(first, second)


def small():
    return np.zeros((2, 4, 6, 6), np.float32), np.zeros((6, 2, 3, 3), np.float32), np.zeros(6, np.float32)


def test_rejects_wrong_dtype():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^x: expected dtype float32"):
        ops.conv2d_forward(x.astype(np.float64), w, b, groups=2)


def test_rejects_wrong_rank():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^w: expected a 4-D array"):
        ops.conv2d_forward(x, w[0], b, groups=2)


def test_rejects_non_contiguous():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^x: expected a C-contiguous"):
        ops.conv2d_forward(np.zeros((2, 4, 6, 12), np.float32)[..., ::2], w, b, groups=2)


def test_rejects_weight_channels_not_matching_groups():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^w: expected 4 input channels per group"):
        ops.conv2d_forward(x, w, b, groups=1)


def test_rejects_groups_not_dividing_input_channels():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^groups: expected a divisor of x's 4 input channels, got 3"):
        ops.conv2d_forward(x, w, b, groups=3)


def test_rejects_groups_not_dividing_output_channels():
    x, _, _ = small()
    with pytest.raises(ValueError, match=r"^groups: expected a divisor of w's 5 output channels, got 2"):
        ops.conv2d_forward(x, np.zeros((5, 2, 3, 3), np.float32), np.zeros(5, np.float32), groups=2)


def test_rejects_wrong_bias_length():
    x, w, _ = small()
    with pytest.raises(ValueError, match=r"^b: expected shape \(6,\)"):
        ops.conv2d_forward(x, w, np.zeros(4, np.float32), groups=2)


def test_rejects_zero_stride():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^stride: expected an integer >= 1, got 0"):
        ops.conv2d_forward(x, w, b, stride=0, groups=2)


def test_rejects_negative_pad():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^pad: expected an integer >= 0, got -1"):
        ops.conv2d_forward(x, w, b, pad=-1, groups=2)


def test_rejects_output_smaller_than_one():
    x, _, _ = small()
    with pytest.raises(ValueError, match=r"^w: expected a 7x7 filter no larger than the padded input 6x6"):
        ops.conv2d_forward(x, np.zeros((6, 2, 7, 7), np.float32), np.zeros(6, np.float32), groups=2)


def test_rejects_wrong_dy_shape():
    x, w, _ = small()
    with pytest.raises(ValueError, match=r"^dy: expected shape \(2, 6, 4, 4\)"):
        ops.conv2d_backward(x, w, np.zeros((2, 6, 6, 6), np.float32), groups=2)


def test_rejects_wrong_out_shape():
    x, w, b = small()
    with pytest.raises(ValueError, match=r"^out: expected shape \(2, 6, 4, 4\)"):
        ops.conv2d_forward(x, w, b, groups=2, out=np.zeros((2, 6, 6, 6), np.float32))


def test_rejects_wrong_gradient_out_dtype():
    x, w, _ = small()
    dy = np.zeros((2, 6, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out\[2\] \(db\): expected dtype float32"):
        ops.conv2d_backward(x, w, dy, groups=2, out=(None, None, np.zeros(6)))


def test_rejects_dx_out_when_not_needed():
    x, w, _ = small()
    dy = np.zeros((2, 6, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out\[0\] \(dx\): expected None"):
        ops.conv2d_backward(x, w, dy, groups=2, need_dx=False, out=(np.zeros_like(x), None, None))


def test_rejects_out_that_is_not_a_triple():
    x, w, _ = small()
    with pytest.raises(ValueError, match=r"^out: expected a tuple \(dx, dw, db\)"):
        ops.conv2d_backward(x, w, np.zeros((2, 6, 4, 4), np.float32), groups=2, out=np.zeros_like(x))
