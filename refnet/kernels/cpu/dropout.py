"""Dropout on the CPU, with the paper's test-time semantics (Krizhevsky et al. 2012, section 4.2).

    train:    y = x * mask           mask[i] = 0 with probability p, 1 otherwise (no 1/(1-p) scaling)
    test:     y = x * (1 - p)        the expected value of the training output
    backward: dx = dy * mask

Layout: x, y, dx, dy float32 of any shape, C-contiguous; mask uint8 of the same shape (1 kept,
0 dropped). The kernels see flat views; element i is the i-th element in C order.

The mask is counter-based, not drawn from a stateful RNG: element i of a call with `seed` is kept
iff `keep_unit(seed, i, drop_threshold)`, a pure function of its three integers:

    state = seed + (i + 1) * 0x9E3779B97F4A7C15        (mod 2**64)
    z     = mix13(state)                               i.e. the (i+1)-th output of SplitMix64(seed)
    u     = z >> 40                                    24 uniform bits, u / 2**24 in [0, 1)
    keep  = u >= drop_threshold,  drop_threshold = ceil(p * 2**24)

so an element is dropped with probability ceil(p * 2**24) / 2**24 (within 2**-24 of p). The mask
depends on neither the thread count nor the backend: `keep_unit` is plain Python on uint64
scalars, compiled here with @njit and compilable as a CUDA device function, so CPU and GPU masks
are identical bit for bit.
"""

import math

import numpy as np
from numba import njit, prange

BLOCK = 1 << 15
UNIFORM_BITS = 24

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)
SHIFT_30 = np.uint64(30)
SHIFT_27 = np.uint64(27)
SHIFT_31 = np.uint64(31)
SHIFT_TO_UNIFORM = np.uint64(64 - UNIFORM_BITS)


def keep_unit(seed, index, drop_threshold):
    """True if element `index` survives dropout under `seed`; all three arguments uint64.

    Self-contained (no calls) so that it compiles unchanged with @njit and @cuda.jit(device=True).
    """
    z = seed + (index + np.uint64(1)) * GOLDEN_GAMMA
    # Stafford's 'Mix13' finaliser, as in SplitMix64: a bijection on uint64 with full avalanche.
    z = (z ^ (z >> SHIFT_30)) * MIX_1
    z = (z ^ (z >> SHIFT_27)) * MIX_2
    z = z ^ (z >> SHIFT_31)
    return (z >> SHIFT_TO_UNIFORM) >= drop_threshold


_keep_unit = njit(inline="always")(keep_unit)


def seed_from_element(seed, first_index):
    """The seed whose mask starts where `seed`'s mask is at element `first_index`: since the state
    of element i is seed + (i + 1) * GOLDEN_GAMMA, element i under the returned seed is element
    first_index + i under `seed`. Data-parallel ranks use it so that the mask of a sample does not
    depend on how the batch is split. Both arguments and the result are Python ints in [0, 2**64).
    """
    return (int(seed) + int(first_index) * int(GOLDEN_GAMMA)) % (1 << 64)


def drop_threshold_for(p):
    """The integer threshold on the 24 uniform bits that drops a fraction p (0 <= p < 1)."""
    return np.uint64(math.ceil(p * (1 << UNIFORM_BITS)))


@njit(parallel=True, cache=True, nogil=True)
def _dropout_forward_flat(y, mask, x, seed, drop_threshold):
    n = x.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        # A slice per task and a loop from 0: the form LLVM vectorises (see relu.py).
        xb, yb, mb = x[lo:hi], y[lo:hi], mask[lo:hi]
        for i in range(xb.size):
            keep = _keep_unit(seed, np.uint64(lo + i), drop_threshold)
            mb[i] = np.uint8(1) if keep else np.uint8(0)
            yb[i] = xb[i] * (np.float32(1.0) if keep else np.float32(0.0))


@njit(parallel=True, cache=True, nogil=True)
def _scale_flat(y, x, factor):
    n = x.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        xb, yb = x[lo:hi], y[lo:hi]
        for i in range(xb.size):
            yb[i] = xb[i] * factor


@njit(parallel=True, cache=True, nogil=True)
def _dropout_backward_flat(dx, dy, mask):
    n = dy.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        dxb, dyb, mb = dx[lo:hi], dy[lo:hi], mask[lo:hi]
        for i in range(dyb.size):
            dxb[i] = dyb[i] * np.float32(mb[i])


def dropout_forward(y, mask, x, p, seed):
    """Training: mask from (seed, flat index), y = x * mask. p in [0, 1), seed in [0, 2**64)."""
    _dropout_forward_flat(y.reshape(-1), mask.reshape(-1), x.reshape(-1), np.uint64(seed), drop_threshold_for(p))


def dropout_eval(y, x, p):
    """Test time: y = x * (1 - p), the factor rounded once to float32."""
    _scale_flat(y.reshape(-1), x.reshape(-1), np.float32(1.0 - p))


def dropout_backward(dx, dy, mask):
    """dx = dy * mask."""
    _dropout_backward_flat(dx.reshape(-1), dy.reshape(-1), mask.reshape(-1))
