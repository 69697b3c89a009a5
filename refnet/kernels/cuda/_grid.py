"""Launch geometry shared by the element-wise kernels: one thread per element, grid-stride loops."""

import math

from numba import config, cuda, int32

THREADS = 256
# Enough blocks to fill any current GPU several times over; larger arrays loop (grid-stride).
# The CUDA simulator starts one OS thread per CUDA thread; a grid-stride loop is correct for any
# grid, so there one block does all the work (and the loop's wrap-around gets exercised).
MAX_BLOCKS = 1 if config.ENABLE_CUDASIM else 65535


def elementwise_grid(count):
    """(blocks, threads) for a grid-stride kernel over `count` elements."""
    return max(1, min(MAX_BLOCKS, math.ceil(count / THREADS))), THREADS


@cuda.jit(device=True, inline=True)
def unflatten3(flat, C, L):
    """(n, c, l) of flat index `flat` into a C-contiguous (N, C, L) array, as int32."""
    rows = int32(flat // L)
    n = rows // int32(C)
    return n, rows - n * int32(C), int32(flat - rows * L)


@cuda.jit(device=True, inline=True)
def unflatten4(flat, C, H, W):
    """(n, c, h, w) of flat index `flat` into a C-contiguous (N, C, H, W) array, as int32."""
    n, c, hw = unflatten3(flat, C, H * W)
    return n, c, hw // int32(W), hw % int32(W)
