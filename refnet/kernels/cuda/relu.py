"""ReLU on the GPU.

    forward:  y = max(x, 0)                (NaN passes through: a NaN input is never hidden)
    backward: dx = dy where y > 0, else 0  (uses the output y, so x need not be kept)

Layout: any shape, float32, C-contiguous device arrays; y, dx, dy have the shape of x. The kernels
see flat views; consecutive threads touch consecutive elements (coalesced), grid-stride loop.
"""

from numba import cuda, float32

from ._grid import elementwise_grid


@cuda.jit
def _relu_forward_flat(y, x):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        y[i] = float32(0.0) if v <= float32(0.0) else v


@cuda.jit
def _relu_backward_flat(dx, y, dy):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, y.size, step):
        dx[i] = dy[i] if y[i] > float32(0.0) else float32(0.0)


def relu_forward(y, x):
    """y = max(x, 0); y and x of the same shape."""
    blocks, threads = elementwise_grid(x.size)
    _relu_forward_flat[blocks, threads](y.reshape(-1), x.reshape(-1))


def relu_backward(dx, y, dy):
    """dx = dy * (y > 0); all three of the same shape."""
    blocks, threads = elementwise_grid(y.size)
    _relu_backward_flat[blocks, threads](dx.reshape(-1), y.reshape(-1), dy.reshape(-1))
