"""The vector vocabulary of simd.py against numpy: arithmetic at offsets that are not multiples of
16 lanes (loads and stores assume 4-byte alignment only), masked loads and stores that touch no
lane outside their mask, stores into int32 arrays, every-other-lane shuffles, max-pooling's NaN-aware
comparison, the reciprocal square root estimate's bound, and 16 x 16 transposes at any pitch."""

import numpy as np
from numba import njit

from refnet.kernels.cpu.simd import (
    HALF,
    LANES,
    prefetch,
    vadd,
    vbroadcast,
    vevens,
    vfirst,
    vfma,
    vload,
    vload_masked,
    vmul,
    vodds,
    vramp_halves,
    vrsqrt_estimate,
    vselect,
    vsplat,
    vstore,
    vstore_masked,
    vtranspose16,
    vwins,
    vzero,
)


@njit(cache=True)
def _combine(out, x, y, z, at, scalar_at, scale):
    vstore(out, at, vfma(vload(x, at), vload(y, at), vload(z, at)))
    vstore(out, at + LANES, vmul(vbroadcast(x, scalar_at), vsplat(scale)))
    vstore(out, at + 2 * LANES, vzero())
    vstore(out, at + 3 * LANES, vadd(vload(x, at), vload(y, at)))
    prefetch(x, at)  # a hint only: changes nothing


def test_vector_ops_match_numpy_at_unaligned_offsets(rng):
    x, y, z = (rng.standard_normal(100).astype(np.float32) for _ in range(3))
    for at in (0, 3, 17):
        out = np.full(100, np.nan, np.float32)
        _combine(out, x, y, z, at, 5, np.float32(-1.5))
        lanes = slice(at, at + LANES)
        want = (x[lanes].astype(np.float64) * y[lanes] + z[lanes]).astype(np.float32)
        np.testing.assert_allclose(out[lanes], want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[at + LANES : at + 2 * LANES], np.float32(x[5] * np.float32(-1.5)))
        np.testing.assert_array_equal(out[at + 2 * LANES : at + 3 * LANES], 0.0)
        np.testing.assert_array_equal(out[at + 3 * LANES : at + 4 * LANES], x[lanes] + y[lanes])
        # Nothing outside the four stores is touched.
        assert np.isnan(out[:at]).all() and np.isnan(out[at + 4 * LANES :]).all()


@njit(cache=True)
def _masked(out, out_int, whole_int, x, at, count):
    first = vfirst(count)
    v = vload_masked(x, at, first)
    vstore_masked(out, 0, v, vfirst(LANES))
    vstore_masked(out, LANES, vevens(v, v), first)
    vstore_masked(out, 2 * LANES, vodds(v, v), first)
    vstore_masked(out_int, 0, vramp_halves(np.float32(3.0), np.float32(100.0), np.float32(2.0)), first)
    vstore(whole_int, 1, vramp_halves(np.float32(3.0), np.float32(100.0), np.float32(2.0)))


def test_masked_loads_and_stores_stay_inside_their_lanes(rng):
    x = rng.standard_normal(20).astype(np.float32)
    for count in (-3, 0, 5, 16, 40):
        out = np.full(3 * LANES, np.nan, np.float32)
        out_int = np.full(LANES, -1, np.int32)
        whole_int = np.full(LANES + 2, -1, np.int32)
        # The last 5 values of x: a load of 16 from there would run past the array's end.
        at = 20 - max(0, min(count, 16)) if count <= 16 else 4
        _masked(out, out_int, whole_int, x, at, count)
        n = max(0, min(count, LANES))
        loaded = np.zeros(LANES, np.float32)
        loaded[:n] = x[at : at + n]
        np.testing.assert_array_equal(out[:LANES], loaded)
        evens_of_both = np.concatenate([loaded[0::2], loaded[0::2]])
        np.testing.assert_array_equal(out[LANES : LANES + n], evens_of_both[:n])
        assert np.isnan(out[LANES + n : 2 * LANES]).all()
        odds_of_both = np.concatenate([loaded[1::2], loaded[1::2]])
        np.testing.assert_array_equal(out[2 * LANES : 2 * LANES + n], odds_of_both[:n])
        assert np.isnan(out[2 * LANES + n :]).all()
        ramp = np.concatenate([3 + 2 * np.arange(HALF), 100 + 2 * np.arange(HALF)]).astype(np.int32)
        np.testing.assert_array_equal(out_int[:n], ramp[:n])
        assert (out_int[n:] == -1).all()
        np.testing.assert_array_equal(whole_int, np.concatenate([[-1], ramp, [-1]]))


@njit(cache=True)
def _pick(out, v, best, x, y):
    vstore(out, 0, vselect(vwins(vload(v, 0), vload(best, 0)), vload(x, 0), vload(y, 0)))


def test_wins_is_max_pooling_rule_with_nan():
    nan = np.nan
    v = np.array([2, 1, 1, nan, nan, 0, 5, -1] * 2, np.float32)
    best = np.array([1, 1, 2, 0, nan, nan, -np.inf, -2] * 2, np.float32)
    wins = np.array([1, 0, 0, 1, 0, 0, 1, 1] * 2, bool)  # greater, tie, less, NaN wins, NaN kept, NaN kept
    out = np.empty(LANES, np.float32)
    _pick(out, v, best, np.ones(LANES, np.float32), np.zeros(LANES, np.float32))
    np.testing.assert_array_equal(out.astype(bool), wins)


@njit(cache=True)
def _rsqrt_estimates(out, x):
    for i in range(0, x.size, LANES):
        vstore(out, i, vrsqrt_estimate(vload(x, i)))


def test_rsqrt_estimate_within_its_bound(rng):
    # Over float32's normal range; the bound is vrsqrtps's (the non-AVX2 fallback is exact).
    x = np.exp2(rng.uniform(-126, 127, 64 * LANES)).astype(np.float32)
    out = np.full_like(x, np.nan)
    _rsqrt_estimates(out, x)
    relative = np.abs(out * np.sqrt(x.astype(np.float64)) - 1.0)
    assert relative.max() <= 1.5 * 2.0**-12


@njit(cache=True)
def _transpose(src, at, pitch, dst, dst_at, dst_pitch):
    vtranspose16(src, at, pitch, dst, dst_at, dst_pitch)


def test_transpose16_at_odd_pitches(rng):
    src = rng.standard_normal(40 * 25).astype(np.float32)
    at, pitch, dst_at, dst_pitch = 7, 25, 3, 19
    want = src[at : at + 16 * pitch].reshape(16, pitch)[:, :16].T  # want[t, r] = src[at + r*pitch + t]
    dst = np.full(dst_at + 16 * dst_pitch, np.nan, np.float32)
    _transpose(src, at, pitch, dst, dst_at, dst_pitch)
    rows = dst[dst_at : dst_at + 16 * dst_pitch].reshape(16, dst_pitch)
    np.testing.assert_array_equal(rows[:, :16], want)
    assert np.isnan(rows[:, 16:]).all() and np.isnan(dst[:dst_at]).all()  # nothing else written
