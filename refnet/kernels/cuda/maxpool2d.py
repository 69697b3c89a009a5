"""Max pooling on the GPU (no padding; the paper's overlapping 3x3 stride-2 windows).

    forward:  y[n,c,p,q] = max_{0<=i,j<size} x[n,c,p*stride+i,q*stride+j]
              argmax[n,c,p,q] = h*W + w of that maximum in the (H, W) input plane (first one on ties;
              a NaN wins its window)
    backward: dx[n,c,h,w] = sum of dy[n,c,p,q] over the windows (p, q) whose argmax is (h, w),
              added in (p, q) order

Layout: x, dx (N, C, H, W); y, dy, argmax (N, C, P, Q) with P = (H - size)//stride + 1 (same for Q);
float32 except argmax int32; C-contiguous device arrays.

Forward runs one thread per output element, consecutive threads along q (coalesced).
Backward is given no window geometry (the launcher contract is (dx, dy, argmax)), so it cannot
gather over the windows covering an input element. Instead one warp owns one (n, c) plane and
walks its windows in chunks of 32 (coalesced loads of argmax and dy): within a chunk, the first
lane holding a given argmax adds the gradients of every window of the chunk that chose that
position, in window order, onto dx. No atomics, each dx element is written by one lane at a
time, and every sum is formed in the CPU's serial (p, q) order, so results are deterministic
and equal to the CPU's bit for bit.
"""

import math

import numpy as np
from numba import cuda, float32, int32

from ._grid import MAX_BLOCKS, elementwise_grid, unflatten4


@cuda.jit
def _maxpool_forward_kernel(y, argmax, x, size, stride):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P, Q = y.shape[2], y.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, y.size, step):
        n, c, p, q = unflatten4(flat, C, P, Q)
        h0 = p * stride
        w0 = q * stride
        best = x[n, c, h0, w0]
        best_at = h0 * W + w0
        for i in range(size):
            for j in range(size):
                v = x[n, c, h0 + i, w0 + j]
                # a NaN wins its window (the first one), so pooling never hides it
                if (v > best or v != v) and best == best:
                    best = v
                    best_at = (h0 + i) * W + w0 + j
        y[n, c, p, q] = best
        argmax[n, c, p, q] = best_at


@cuda.jit
def _fill_zero_flat(a):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, step):
        a[i] = float32(0.0)


WARP = 32
PLANES_PER_BLOCK = 4  # one warp per (n, c) plane


@cuda.jit
def _maxpool_backward_kernel(dx_planes, dy_planes, argmax_planes):
    targets = cuda.shared.array((PLANES_PER_BLOCK, WARP), int32)
    values = cuda.shared.array((PLANES_PER_BLOCK, WARP), float32)
    warp = int32(cuda.threadIdx.x) // int32(WARP)
    lane = int32(cuda.threadIdx.x) % int32(WARP)
    planes, plane_size, windows = dy_planes.shape[0], dx_planes.shape[1], dy_planes.shape[1]
    # Every thread runs every chunk of every plane group (no early exit): syncthreads needs the
    # whole block. Blocks stride over the plane groups.
    for first_plane in range(cuda.blockIdx.x * PLANES_PER_BLOCK, planes, cuda.gridDim.x * PLANES_PER_BLOCK):
        plane = first_plane + warp
        for chunk in range(0, windows, WARP):
            window = chunk + lane
            at = int32(-1)
            value = float32(0.0)
            if plane < planes and window < windows:
                at = argmax_planes[plane, window]
                value = dy_planes[plane, window]
                if at < 0 or at >= plane_size:  # a corrupt argmax is skipped, never written out of bounds
                    at = int32(-1)
            targets[warp, lane] = at
            values[warp, lane] = value
            cuda.syncthreads()
            if at >= 0:
                first = True
                for other in range(lane):
                    if targets[warp, other] == at:
                        first = False
                if first:  # this lane adds, in window order, every window of the chunk that chose `at`
                    total = dx_planes[plane, at]
                    for other in range(lane, WARP):
                        if targets[warp, other] == at:
                            total += values[warp, other]
                    dx_planes[plane, at] = total
            # the next chunk may add to the same positions, and reuses the shared arrays
            cuda.syncthreads()


def maxpool2d_forward(y, argmax, x, size, stride):
    blocks, threads = elementwise_grid(y.size)
    _maxpool_forward_kernel[blocks, threads](y, argmax, x, np.int32(size), np.int32(stride))


def maxpool2d_backward(dx, dy, argmax):
    """Entries of argmax outside [0, H*W) are skipped. Unlike the CPU launcher this returns None
    rather than counting them: the count would cost a device-to-host copy and a synchronisation."""
    N, C, H, W = dx.shape
    planes = N * C
    blocks, threads = elementwise_grid(dx.size)
    _fill_zero_flat[blocks, threads](dx.reshape(-1))
    blocks = min(MAX_BLOCKS, math.ceil(planes / PLANES_PER_BLOCK))
    _maxpool_backward_kernel[blocks, PLANES_PER_BLOCK * WARP](
        dx.reshape(planes, H * W), dy.reshape(planes, -1), argmax.reshape(planes, -1)
    )
