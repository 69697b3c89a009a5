"""CUDA convolution against the CPU op: the implicit-GEMM kernels (through refnet.ops) and the
direct reference kernels, forward and backward, with stride, padding, groups and sizes ragged
against the tiles; split-K backward-filter; outputs poisoned with NaN."""

import numpy as np
import pytest

from refnet import ops
from refnet.kernels.cuda import _tiled
from refnet.kernels.cuda import conv2d as cuda_conv2d

TOL = dict(rtol=1e-4, atol=1e-5)

# (N, C, H, W), (K, C/groups, R, S), stride, pad, groups
CASES = {
    "stride2-pad1": ((2, 3, 7, 6), (5, 3, 3, 3), 2, 1, 1),
    "groups2": ((1, 4, 5, 5), (6, 2, 3, 3), 1, 1, 2),
    "conv1-like-stride4": ((1, 3, 11, 10), (4, 3, 5, 5), 4, 0, 1),
    # 11x11 taps, stride 4, pad 2, two groups: the backward-data phase test (see conv2d) at stride 4
    "11x11-stride4-pad2-groups2": ((1, 4, 15, 14), (4, 2, 11, 11), 4, 2, 2),
}


def _problem(rng, case):
    x_shape, w_shape, stride, pad, groups = CASES[case]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    geometry = dict(stride=stride, pad=pad, groups=groups)
    y = ops.conv2d_forward(x, w, b, **geometry)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    return x, w, b, dy, geometry, y, ops.conv2d_backward(x, w, dy, **geometry)


def _poisoned_grads(gpu, x, w):
    return gpu.poisoned(x.shape), gpu.poisoned(w.shape), gpu.poisoned((w.shape[0],))


def _assert_grads(gpu, got, want):
    for name, g, wnt in zip(("dx", "dw", "db"), got, want):
        np.testing.assert_allclose(gpu.get(g, name), wnt, **TOL, err_msg=name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_implicit_gemm_matches_cpu(gpu, rng, case):
    x, w, b, dy, geometry, y_cpu, grads_cpu = _problem(rng, case)
    y = ops.conv2d_forward(gpu.put(x), gpu.put(w), gpu.put(b), **geometry, out=gpu.poisoned(y_cpu.shape))
    np.testing.assert_allclose(gpu.get(y, "y"), y_cpu, **TOL)
    grads = ops.conv2d_backward(gpu.put(x), gpu.put(w), gpu.put(dy), **geometry, out=_poisoned_grads(gpu, x, w))
    _assert_grads(gpu, grads, grads_cpu)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_kernels_match_cpu(gpu, rng, case):
    x, w, b, dy, geometry, y_cpu, grads_cpu = _problem(rng, case)
    args = geometry["stride"], geometry["pad"], geometry["groups"]
    y = gpu.poisoned(y_cpu.shape)
    cuda_conv2d.conv2d_forward_reference(y, gpu.put(x), gpu.put(w), gpu.put(b), *args)
    np.testing.assert_allclose(gpu.get(y, "y"), y_cpu, **TOL)
    grads = _poisoned_grads(gpu, x, w)
    cuda_conv2d.conv2d_backward_reference(*grads, gpu.put(x), gpu.put(w), gpu.put(dy), *args)
    _assert_grads(gpu, grads, grads_cpu)


def test_split_k_backward_filter_without_dx(gpu, rng, monkeypatch):
    """K = N*P*Q = 24 cut into three ranges of 8, whose partial sums a second kernel adds; dx skipped
    as for conv1."""
    monkeypatch.setattr(_tiled, "MIN_K_PER_SPLIT", _tiled.TILE_K)
    x, w, b, dy, geometry, _, (_, dw_cpu, db_cpu) = _problem(rng, "stride2-pad1")
    dx, dw, db = ops.conv2d_backward(
        gpu.put(x), gpu.put(w), gpu.put(dy), **geometry, need_dx=False,
        out=(None, gpu.poisoned(w.shape), gpu.poisoned((w.shape[0],))),
    )
    assert dx is None
    _assert_grads(gpu, (dw, db), (dw_cpu, db_cpu))
