"""CUDA GEMM and linear layer against the CPU ops: the tiled register-blocked kernel (through
refnet.ops) and its simple reference kernel, all four transpose cases, on shapes ragged against
the 128 x 128 x 8 tiles; split-K; outputs poisoned with NaN."""

import numpy as np
import pytest

from refnet import ops
from refnet.kernels.cuda import _tiled
from refnet.kernels.cuda import gemm as cuda_gemm

M, N, K = 20, 17, 30  # none divides a tile size
TOL = dict(rtol=1e-5, atol=1e-5)


def _operands(rng, trans_a, trans_b, m=M, n=N, k=K):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_every_transpose(gpu, rng, trans_a, trans_b):
    a, b = _operands(rng, trans_a, trans_b)
    want = ops.gemm(a, b, trans_a, trans_b)
    c = ops.gemm(gpu.put(a), gpu.put(b), trans_a, trans_b, out=gpu.poisoned((M, N)))  # beta = 0: c unread
    np.testing.assert_allclose(gpu.get(c, "c (tiled)"), want, **TOL)
    c_ref = gpu.poisoned((M, N))
    cuda_gemm.gemm_reference(c_ref, gpu.put(a), gpu.put(b), trans_a, trans_b, 1.0, 0.0)
    np.testing.assert_allclose(gpu.get(c_ref, "c (reference)"), want, **TOL)


def test_gemm_alpha_beta(gpu, rng):
    a, b = _operands(rng, False, True)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    want = ops.gemm(a, b, False, True, alpha=0.5, beta=-2.0, c=c0.copy())
    for launcher in (cuda_gemm.gemm, cuda_gemm.gemm_reference):
        c = gpu.put(c0)
        launcher(c, gpu.put(a), gpu.put(b), False, True, 0.5, -2.0)
        np.testing.assert_allclose(gpu.get(c, "c"), want, **TOL)


def test_split_k_and_several_tiles(gpu, rng):
    """Two tiles down M and K cut into three ranges, whose partial sums a second kernel adds."""
    m, n, k = _tiled.TILE_M + 3, 5, 5 * _tiled.TILE_K + 3  # K ranges of 32, 32 and 19
    a, b = _operands(rng, True, False, m, n, k)
    c = gpu.poisoned((m, n))
    cuda_gemm.gemm(c, gpu.put(a), gpu.put(b), True, False, 1.0, 0.0, splits=3)
    np.testing.assert_allclose(gpu.get(c, "c"), ops.gemm(a, b, True, False), **TOL)


def test_linear_matches_cpu(gpu, rng):
    x = rng.standard_normal((3, 21)).astype(np.float32)
    w = rng.standard_normal((13, 21)).astype(np.float32)
    b = rng.standard_normal(13).astype(np.float32)
    dy = rng.standard_normal((3, 13)).astype(np.float32)
    y = ops.linear_forward(gpu.put(x), gpu.put(w), gpu.put(b), out=gpu.poisoned((3, 13)))
    np.testing.assert_allclose(gpu.get(y, "y"), ops.linear_forward(x, w, b), **TOL)
    grads = ops.linear_backward(
        gpu.put(x), gpu.put(w), gpu.put(dy), out=tuple(gpu.poisoned(s) for s in (x.shape, w.shape, b.shape))
    )
    for name, got, want in zip(("dx", "dw", "db"), grads, ops.linear_backward(x, w, dy)):
        np.testing.assert_allclose(gpu.get(got, name), want, **TOL)
    dx, dw, db = ops.linear_backward(gpu.put(x), gpu.put(w), gpu.put(dy), need_dx=False)
    assert dx is None


def test_split_k_only_when_the_tiles_cannot_fill_the_gpu():
    many_tiles = _tiled.choose_splits(128 * 64, 128 * 64, 4096, 1)
    few_tiles_long_k = _tiled.choose_splits(96, 363, 128 * 55 * 55, 1)  # conv1's backward-filter
    few_tiles_short_k = _tiled.choose_splits(96, 363, 2 * _tiled.MIN_K_PER_SPLIT, 1)
    assert many_tiles == 1
    assert few_tiles_long_k * 3 >= 2 * _tiled._sm_count()  # two blocks for every SM
    assert few_tiles_short_k == 2  # never below MIN_K_PER_SPLIT of K per range
