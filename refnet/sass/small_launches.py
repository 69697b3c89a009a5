"""One call of every CUDA launcher of refnet.kernels.cuda at small, ragged shapes.

    launch_every_kernel(array)      array(*shape, dtype=np.float32) -> a C-contiguous array of that
                                    shape (numpy or device; its values do not matter)

Shared by the checks that need every kernel launched once: tests/cuda/test_compile_ptx.py (numpy
arrays, launches captured and compiled, no GPU) and bench/gpu_sanitize.py (device arrays under
compute-sanitizer on a GPU). Shapes are consistent, so on a GPU every launch is in bounds by
contract, and ragged against the tiles (128 x 128 x 8): edges, several K tiles, split-K, groups.
"""

import numpy as np

M, N, K = 130, 70, 40  # GEMM: two row tiles, one ragged column tile, five K tiles


def launch_every_kernel(array):
    from ..kernels.cuda import (_grid, avgpool2d, conv2d, dropout, finite, gemm, linear, lrn, maxpool2d, relu,
                                sgd, softmax_cross_entropy)  # fmt: skip

    f = array
    x, w, b, y = f(2, 4, 9, 9), f(6, 2, 3, 3), f(6), f(2, 6, 5, 5)  # stride 2, pad 1, groups 2
    conv2d.conv2d_forward(y, x, w, b, 2, 1, 2)
    conv2d.conv2d_backward(f(*x.shape), f(*w.shape), f(6), x, w, y, 2, 1, 2)
    conv2d.conv2d_forward_reference(y, x, w, b, 2, 1, 2)
    conv2d.conv2d_backward_reference(f(*x.shape), f(*w.shape), f(6), x, w, y, 2, 1, 2)
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = f(K, M) if trans_a else f(M, K)
            b_ = f(N, K) if trans_b else f(K, N)
            gemm.gemm(f(M, N), a, b_, trans_a, trans_b, 1.0, 0.0)
    gemm.gemm_reference(f(M, N), f(M, K), f(K, N), False, False, 1.0, 0.0)
    gemm.gemm(f(M, N), f(M, K), f(K, N), False, False, 1.0, 0.0, splits=2)
    linear.linear_forward(f(M, N), f(M, K), f(N, K), f(N))
    linear.linear_backward(f(M, K), f(N, K), f(N), f(M, K), f(N, K), f(M, N))
    pooled, argmax = f(2, 4, 4, 4), f(2, 4, 4, 4, dtype=np.int32)
    maxpool2d.maxpool2d_forward(pooled, argmax, x, 3, 2)
    maxpool2d.maxpool2d_backward(f(*x.shape), pooled, argmax)
    avgpool2d.avgpool2d_forward(pooled, x, 3, 2)
    avgpool2d.avgpool2d_backward(f(*x.shape), pooled, 3, 2)
    lrn.lrn_forward(f(*x.shape), f(*x.shape), x, 5, 1e-4, 0.75, 2.0)
    lrn.lrn_backward(f(*x.shape), x, x, x, x, 5, 1e-4, 0.75, 2.0)
    relu.relu_forward(f(*x.shape), x)
    relu.relu_backward(f(*x.shape), x, x)
    mask = f(*x.shape, dtype=np.uint8)
    dropout.dropout_forward(f(*x.shape), mask, x, 0.5, 7)
    dropout.dropout_eval(f(*x.shape), x, 0.5)
    dropout.dropout_backward(f(*x.shape), x, mask)
    logits, labels = f(3, 10), f(3, dtype=np.int32)
    softmax_cross_entropy.softmax_cross_entropy(f(3, 10), f(3), logits, labels)
    softmax_cross_entropy.softmax_cross_entropy_backward(f(3, 10), logits, labels)
    sgd.sgd_momentum_update(f(10), f(10), f(10), 0.01, 0.9, 5e-4)
    flat = f(10)  # finite.all_finite reads its flag back to the host; its kernel is launched directly
    finite._flag_non_finite[_grid.elementwise_grid(flat.size)](flat, f(1, dtype=np.int32))
