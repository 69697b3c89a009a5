"""GEMM: all four transpose cases with alpha and beta against a float64 loop reference, the packed
kernel against the naive one on shapes that do not divide its tiles and blocks (in place, with
pitches and strides, as conv2d uses it), the kernel that reads op(a)'s rows in place (the NT case
and the FC forward), poisoned outputs, determinism, validation."""

import numba
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
@pytest.mark.parametrize("M, N, K", [(37, 300, 270), (130, 45, 530), (3, 1, 600), (270, 600, 13)])
def test_packed_kernel_matches_naive_on_ragged_shapes(rng, M, N, K, trans_a, trans_b):
    # 37, 45, 270, 300 and 600 are not whole micro tiles (8 x 32 or 4 x 16, machine.py); 270 and 300
    # cross a block of parallel work (MB 256 or 128, NB 256 or 128), 270, 530 and 600 a K slice
    # (256); 13 is shorter than one vector.
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    fast, naive = c0.copy(), c0.copy()
    kernels.gemm(fast, a, b, trans_a, trans_b, 0.5, -2.0)
    kernels.gemm_naive(naive, a, b, trans_a, trans_b, 0.5, -2.0)
    np.testing.assert_allclose(fast, naive, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("trans_a, trans_b", CASES)
@pytest.mark.parametrize("K", [1, 7, 32, kernels.KC, kernels.KC + 1])
@pytest.mark.parametrize("beta", [0.0, -0.5])
def test_one_k_slice_matches_float64_reference(rng, K, beta, trans_a, trans_b):
    # K up to one slice (the FC weight gradients: K = the batch) takes the packed block's other
    # order, row group by row group along c's rows, from op(b) packed once for all the blocks;
    # KC + 1 is the first K that does not. 263 x 300
    # crosses the row and column blocks (MB 256 or 128, NB 256 or 128) and no tile divides it.
    M, N = 263, 300
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    c = poisoned((M, N)) if beta == 0.0 else c0.copy()
    kernels.gemm(c, a, b, trans_a, trans_b, 1.5, beta)
    assert_all_written(c)
    # In float64, one outer product per K index (refs.gemm's Python loops are too slow at this size).
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    want = beta * c0.astype(np.float64)
    for p in range(K):
        want += 1.5 * np.multiply.outer(op_a[:, p], op_b[p, :])
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * np.sqrt(K))


@pytest.mark.parametrize("trans_a, trans_b", CASES)
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_serial_kernel_matches_naive_with_pitches(rng, beta, trans_a, trans_b):
    # conv2d hands gemm_serial flat buffers with row pitches wider than the rows, and reads a and b
    # in place with any strides. Columns past N must stay untouched.
    M, N, K, ldc, pitch = 23, 530, 270, 544, 560
    a = rng.standard_normal((K, pitch) if trans_a else (M, pitch)).astype(np.float32)
    b = rng.standard_normal((N, pitch) if trans_b else (K, pitch)).astype(np.float32)
    a_view = a[:, :M] if trans_a else a[:, :K]
    b_view = b[:, :K] if trans_b else b[:, :N]
    c = rng.standard_normal((M, ldc)).astype(np.float32)
    want = c.copy()
    kernels.gemm_naive(want[:, :N], np.ascontiguousarray(a_view), np.ascontiguousarray(b_view), trans_a, trans_b,
                       1.5, beta)
    if beta == 0.0:
        c[:, :N] = np.nan
    sa_i, sa_p = (1, pitch) if trans_a else (pitch, 1)
    sb_p, sb_j = (1, pitch) if trans_b else (pitch, 1)
    kernels.gemm_serial(c.reshape(-1), ldc, a.reshape(-1), sa_i, sa_p, b.reshape(-1), sb_p, sb_j, M, N, K,
                        np.float32(1.5), np.float32(beta))
    np.testing.assert_allclose(c[:, :N], want[:, :N], rtol=1e-4, atol=1e-4 * np.sqrt(K))
    np.testing.assert_array_equal(c[:, N:], want[:, N:])


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("M", [1, 3, 263])
def test_rows_of_a_kernel_matches_naive_with_pitches(rng, M, beta):
    # gemm_rows_a reads a's rows in place, lda apart (wider than K), MR rows at a time: 1 and 3 are
    # only a partial group of rows (copied with zero rows below), 263 crosses the row blocks and
    # ends in one. op(b) is a^T's kind of operand (b stored (N, K), the FC forward's x); 530
    # crosses a K slice and 37 columns are not whole panels. Columns past N must stay untouched.
    N, K, ldc, lda = 37, 530, 48, 544
    a = rng.standard_normal((M, lda)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = rng.standard_normal((M, ldc)).astype(np.float32)
    want = c.copy()
    kernels.gemm_naive(want[:, :N], np.ascontiguousarray(a[:, :K]), b, False, True, 1.5, beta)
    if beta == 0.0:
        c[:, :N] = np.nan
    kernels.gemm_rows_a(c.reshape(-1), ldc, a.reshape(-1), lda, b.reshape(-1), kernels.UNIT_STRIDE, np.int64(K),
                        M, N, K, np.float32(1.5), np.float32(beta))
    np.testing.assert_allclose(c[:, :N], want[:, :N], rtol=1e-4, atol=1e-4 * np.sqrt(K))
    np.testing.assert_array_equal(c[:, N:], want[:, N:])


@pytest.mark.parametrize("sb_p, sb_j", [(1, 300), (300, 1), (2, 700)])
@pytest.mark.parametrize("p0, kc, j0, nc", [(0, 256, 0, 256), (5, 37, 3, 70), (16, 16, 40, 16), (1, 15, 0, 9)])
def test_packing_of_b_copies_exactly_and_pads_with_zeros(rng, sb_p, sb_j, p0, kc, j0, nc):
    # The three ways op(b) is packed: rows that are runs of b (vector copies, masked at the end),
    # columns that are runs (16 x 16 blocks transposed in registers, the rest value by value), and
    # neither (value by value). Every value of the panels is compared, padding included.
    b = rng.standard_normal(300 * 700).astype(np.float32)
    op_b = lambda p, j: b[p * sb_p + j * sb_j]  # noqa: E731
    NR, KC = kernels.NR, kernels.KC
    bp = np.full((nc + NR - 1) // NR * NR * KC, np.nan, np.float32)
    kernels._pack_b(bp, b, sb_p, sb_j, p0, kc, j0, nc)
    for h in range((nc + NR - 1) // NR):
        panel = bp[h * KC * NR : h * KC * NR + kc * NR].reshape(kc, NR)
        want = np.zeros((kc, NR), np.float32)
        for j in range(min(NR, nc - h * NR)):
            want[:, j] = [op_b(p0 + p, j0 + h * NR + j) for p in range(kc)]
        np.testing.assert_array_equal(panel, want)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_dot_product_kernel_matches_naive_with_pitches(rng, beta):
    # gemm_nt_serial (conv2d's NT products) reads rows of a and b along K in place, pitch apart;
    # 37 x 530 is not a whole number of its 4x4 tiles and 600 crosses its K slice (512).
    M, N, K, ldc, pitch = 37, 530, 600, 544, 608
    a = rng.standard_normal((M, pitch)).astype(np.float32)
    b = rng.standard_normal((N, pitch)).astype(np.float32)
    c = rng.standard_normal((M, ldc)).astype(np.float32)
    want = c.copy()
    kernels.gemm_naive(want[:, :N], np.ascontiguousarray(a[:, :K]), np.ascontiguousarray(b[:, :K]), False, True,
                       1.5, beta)
    if beta == 0.0:
        c[:, :N] = np.nan
    kernels.gemm_nt_serial(c.reshape(-1), ldc, a.reshape(-1), pitch, b.reshape(-1), pitch, M, N, K,
                           np.float32(1.5), np.float32(beta))
    np.testing.assert_allclose(c[:, :N], want[:, :N], rtol=1e-4, atol=1e-4 * np.sqrt(K))
    np.testing.assert_array_equal(c[:, N:], want[:, N:])


def test_beta_zero_ignores_nan_in_c(rng):
    a, b = operands(rng, 8, 12, 300, False, False)
    c = ops.gemm(a, b, c=poisoned((8, 12)))
    assert_all_written(c)


def test_is_deterministic(rng):
    a, b = operands(rng, 70, 90, 600, True, False)
    first = ops.gemm(a, b, trans_a=True)
    second = ops.gemm(a, b, trans_a=True)
    np.testing.assert_array_equal(first, second)


def test_is_bit_identical_with_one_and_two_threads(rng):
    # Blocks of c go to whichever thread is free; each element must still be summed in one order.
    a, b = operands(rng, 300, 600, 530, False, True)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ops.gemm(a, b, trans_b=True)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = ops.gemm(a, b, trans_b=True)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)


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
