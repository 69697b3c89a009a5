"""GEMM: all four transpose cases with alpha and beta against a float64 loop reference, the packed
kernel against the naive one on shapes that do not divide its block sizes, poisoned outputs,
determinism, validation."""

import numpy as np
import pytest
from poison import assert_all_written, poisoned
from refs import gemm as ref

import refnet.ops as ops
from refnet.kernels.cpu import gemm as kernels

CASES = [(False, False), (False, True), (True, False), (True, True)]


def operands(rng, M, N, K, trans_a, trans_b):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("trans_a, trans_b", CASES)
@pytest.mark.parametrize("M, N, K", [(1, 1, 1), (5, 7, 3), (9, 6, 17)])
def test_matches_reference_without_beta(rng, M, N, K, trans_a, trans_b):
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c = ops.gemm(a, b, trans_a, trans_b, alpha=1.5, out=poisoned((M, N)))
    assert_all_written(c)
    np.testing.assert_allclose(c, ref.gemm(a, b, trans_a, trans_b, alpha=1.5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_a, trans_b", CASES)
def test_matches_reference_with_beta(rng, trans_a, trans_b):
    M, N, K = 6, 9, 5
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    c = c0.copy()
    result = ops.gemm(a, b, trans_a, trans_b, alpha=-0.5, beta=0.75, c=c)
    assert result is c
    np.testing.assert_allclose(c, ref.gemm(a, b, trans_a, trans_b, -0.5, 0.75, c0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_a, trans_b", CASES)
@pytest.mark.parametrize("M, N, K", [(37, 300, 270), (130, 45, 530), (3, 1, 600)])
def test_packed_kernel_matches_naive_on_ragged_shapes(rng, M, N, K, trans_a, trans_b):
    # 300 and 130 cross a macro-tile edge, 270 and 530 a K-slice edge; none is a multiple of 4.
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    fast, naive = c0.copy(), c0.copy()
    kernels.gemm(fast, a, b, trans_a, trans_b, 0.5, -2.0)
    kernels.gemm_naive(naive, a, b, trans_a, trans_b, 0.5, -2.0)
    np.testing.assert_allclose(fast, naive, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_beta_zero_ignores_nan_in_c(rng):
    a, b = operands(rng, 8, 12, 300, False, False)
    c = ops.gemm(a, b, c=poisoned((8, 12)))
    assert_all_written(c)


def test_is_deterministic(rng):
    a, b = operands(rng, 70, 90, 600, True, False)
    first = ops.gemm(a, b, trans_a=True)
    second = ops.gemm(a, b, trans_a=True)
    np.testing.assert_array_equal(first, second)


def test_rejects_wrong_dtype():
    with pytest.raises(ValueError, match=r"^a: expected dtype float32"):
        ops.gemm(np.zeros((2, 3)), np.zeros((3, 4), np.float32))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"^b: expected a 2-D array"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros(3, np.float32))


def test_rejects_non_contiguous():
    with pytest.raises(ValueError, match=r"^b: expected a C-contiguous"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 8), np.float32)[:, ::2])


def test_rejects_mismatched_inner_dimension():
    with pytest.raises(ValueError, match=r"^b: expected op\(b\) with 3 rows"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))


def test_rejects_non_bool_transpose_flag():
    with pytest.raises(ValueError, match=r"^trans_b: expected a bool"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), trans_b=1)


def test_rejects_non_finite_alpha():
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), alpha=np.inf)


def test_rejects_beta_without_c():
    with pytest.raises(ValueError, match=r"^c: expected an \(M, N\)"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), beta=1.0)


def test_rejects_wrong_c_shape():
    with pytest.raises(ValueError, match=r"^c: expected shape \(2, 4\)"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), c=np.zeros((4, 2), np.float32))


def test_rejects_wrong_out_dtype():
    with pytest.raises(ValueError, match=r"^out: expected dtype float32"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), out=np.zeros((2, 4)))


def test_rejects_out_different_from_c():
    c = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out: expected the same array as c"):
        ops.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), c=c, out=c.copy())


def test_rejects_output_overlapping_an_input():
    a = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"^a: expected an array that does not share memory"):
        ops.gemm(a, np.zeros((3, 3), np.float32), c=a)


def test_rejects_empty_dimension():
    with pytest.raises(ValueError, match=r"^a, b: expected M, N, K >= 1, got M=2, N=4, K=0"):
        ops.gemm(np.zeros((2, 0), np.float32), np.zeros((0, 4), np.float32))
