"""CUDA GEMM: the tiled register-blocked kernel and its simple reference kernel, all four transpose
cases, on shapes ragged against the 128 x 128 x 8 tiles, against a float64 product."""

import numpy as np
import pytest

from refnet.kernels.cuda import _tiled
from refnet.kernels.cuda import gemm as cuda_gemm

M, N, K = 20, 17, 30  # none divides a tile size


def _operands(rng, trans_a, trans_b, m=M, n=N, k=K):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    product = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    return a, b, product


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("launcher", [cuda_gemm.gemm, cuda_gemm.gemm_reference], ids=["tiled", "reference"])
def test_gemm_every_transpose(gpu, rng, launcher, trans_a, trans_b):
    a, b, product = _operands(rng, trans_a, trans_b)
    c = gpu.poisoned((M, N))  # beta = 0: c must not be read
    launcher(c, gpu.put(a), gpu.put(b), trans_a, trans_b, 1.0, 0.0)
    np.testing.assert_allclose(gpu.get(c, "c"), product, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("launcher", [cuda_gemm.gemm, cuda_gemm.gemm_reference], ids=["tiled", "reference"])
def test_gemm_alpha_beta(gpu, rng, launcher):
    a, b, product = _operands(rng, False, True)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    c = gpu.put(c0)
    launcher(c, gpu.put(a), gpu.put(b), False, True, 0.5, -2.0)
    np.testing.assert_allclose(gpu.get(c, "c"), 0.5 * product - 2.0 * c0, rtol=1e-5, atol=1e-5)


def test_split_k_and_several_tiles(gpu, rng):
    """Two tiles down M and K cut into three ranges, whose partial sums a second kernel adds."""
    m, n, k = _tiled.TILE_M + 3, 5, 5 * _tiled.TILE_K + 3  # K ranges of 16, 16, 11
    a, b, product = _operands(rng, True, False, m, n, k)
    c = gpu.poisoned((m, n))
    _tiled.launch(cuda_gemm._kernels(True, False), c, gpu.put(a), gpu.put(b), c, (), m, n, k, 1, 1.0, 0.0, splits=3)
    np.testing.assert_allclose(gpu.get(c, "c"), product, rtol=1e-5, atol=1e-5)
