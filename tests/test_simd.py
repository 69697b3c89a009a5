"""The vector vocabulary of the GEMM micro-kernel against numpy, at offsets that are not multiples
of 16 lanes (loads and stores assume 4-byte alignment only)."""

import numpy as np
from numba import njit

from refnet.kernels.cpu.simd import LANES, vbroadcast, vfma, vload, vmul, vsplat, vstore, vzero


@njit(cache=True)
def _combine(out, x, y, z, at, scalar_at, scale):
    vstore(out, at, vfma(vload(x, at), vload(y, at), vload(z, at)))
    vstore(out, at + LANES, vmul(vbroadcast(x, scalar_at), vsplat(scale)))
    vstore(out, at + 2 * LANES, vzero())


def test_vector_ops_match_numpy_at_unaligned_offsets(rng):
    x, y, z = (rng.standard_normal(80).astype(np.float32) for _ in range(3))
    for at in (0, 3, 17):
        out = np.full(80, np.nan, np.float32)
        _combine(out, x, y, z, at, 5, np.float32(-1.5))
        lanes = slice(at, at + LANES)
        want = (x[lanes].astype(np.float64) * y[lanes] + z[lanes]).astype(np.float32)
        np.testing.assert_allclose(out[lanes], want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[at + LANES : at + 2 * LANES], np.float32(x[5] * np.float32(-1.5)))
        np.testing.assert_array_equal(out[at + 2 * LANES : at + 3 * LANES], 0.0)
        # Nothing outside the three stores is touched.
        assert np.isnan(out[:at]).all() and np.isnan(out[at + 3 * LANES :]).all()
