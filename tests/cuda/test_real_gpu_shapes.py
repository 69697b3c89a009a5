"""On a real GPU only: the CUDA convolution and GEMM at AlexNet's own layer shapes (batch 2, FC
at batch 16) against the CPU ops, so that many tiles, split-K and the grid limits are exercised at
scale, and split-K results are checked to be identical run to run. The simulator would need hours
for these shapes; there every test here skips.
"""

import numpy as np
import pytest
from numba import config

from refnet import ops

pytestmark = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="AlexNet-sized shapes: real GPU only")

# name: (x shape, w shape, stride, pad, groups) at input 227, batch 2 (the paper's variant groups)
CONV_LAYERS = {
    "conv1": ((2, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1),
    "conv2": ((2, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2),
    "conv3": ((2, 256, 13, 13), (384, 256, 3, 3), 1, 1, 1),
    "conv5": ((2, 384, 13, 13), (256, 192, 3, 3), 1, 1, 2),
}
FC_LAYERS = {"fc6": (16, 9216, 4096), "fc8": (16, 4096, 1000)}


@pytest.mark.parametrize("layer", sorted(CONV_LAYERS))
def test_conv_layer(gpu, rng, layer):
    x_shape, w_shape, stride, pad, groups = CONV_LAYERS[layer]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (0.05 * rng.standard_normal(w_shape)).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    geometry = dict(stride=stride, pad=pad, groups=groups)
    y_cpu = ops.conv2d_forward(x, w, b, **geometry)
    y = ops.conv2d_forward(gpu.put(x), gpu.put(w), gpu.put(b), **geometry, out=gpu.poisoned(y_cpu.shape))
    np.testing.assert_allclose(gpu.get(y, "y"), y_cpu, rtol=1e-3, atol=1e-3)

    dy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    need_dx = layer != "conv1"
    want = ops.conv2d_backward(x, w, dy, **geometry, need_dx=need_dx)
    runs = []
    for _ in range(2):
        out = (gpu.poisoned(x.shape) if need_dx else None, gpu.poisoned(w.shape), gpu.poisoned((w.shape[0],)))
        runs.append(ops.conv2d_backward(gpu.put(x), gpu.put(w), gpu.put(dy), **geometry, need_dx=need_dx, out=out))
    for name, got, again, wnt in zip(("dx", "dw", "db"), runs[0], runs[1], want):
        if wnt is None:
            continue
        got = gpu.get(got, name)
        np.testing.assert_allclose(got, wnt, rtol=1e-3, atol=1e-2 * float(np.abs(wnt).max()), err_msg=name)
        np.testing.assert_array_equal(again.copy_to_host(), got, err_msg=f"{name} differs run to run")


@pytest.mark.parametrize("layer", sorted(FC_LAYERS))
def test_fc_layer(gpu, rng, layer):
    n, fan_in, fan_out = FC_LAYERS[layer]
    x = rng.standard_normal((n, fan_in)).astype(np.float32)
    w = (0.01 * rng.standard_normal((fan_out, fan_in))).astype(np.float32)
    b = rng.standard_normal(fan_out).astype(np.float32)
    dy = rng.standard_normal((n, fan_out)).astype(np.float32)
    y = ops.linear_forward(gpu.put(x), gpu.put(w), gpu.put(b), out=gpu.poisoned((n, fan_out)))
    np.testing.assert_allclose(gpu.get(y, "y"), ops.linear_forward(x, w, b), rtol=1e-3, atol=1e-3)
    grads = ops.linear_backward(gpu.put(x), gpu.put(w), gpu.put(dy))
    for name, got, want in zip(("dx", "dw", "db"), grads, ops.linear_backward(x, w, dy)):
        np.testing.assert_allclose(gpu.get(got, name), want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()), err_msg=name)
