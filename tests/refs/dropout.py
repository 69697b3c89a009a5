"""Dropout's mask from first principles: SplitMix64 in Python integers (no numpy, no numba)."""

MASK_64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def splitmix64_output(seed, i):
    """The (i+1)-th output of SplitMix64 started at state `seed` (i = 0 gives the first)."""
    z = (seed + (i + 1) * GOLDEN_GAMMA) & MASK_64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK_64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK_64
    return z ^ (z >> 31)


def dropout_mask(seed, count, p):
    """[1 if kept else 0 for each flat index]: kept iff the top 24 bits / 2**24 >= p."""
    return [1 if (splitmix64_output(seed, i) >> 40) / 2**24 >= p else 0 for i in range(count)]
