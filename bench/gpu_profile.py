"""One conv and one GEMM launch at AlexNet's batch-128 shapes, for Nsight Compute (ncu):

    ncu --kernel-name regex:tiled_kernel --metrics ... python3 bench/gpu_profile.py

launches, in this order, conv2 forward (128 x 96 x 27 x 27 -> 256 x 27 x 27, 5x5 pad 2) and fc6
forward (128 x 9216 -> 4096), each once, so that the profiled tiled_kernel launches are those two
passes (bench/ncu_compare.py puts their counters beside `refnet sass`'s static prediction).
"""

import sys

import numpy as np

PASSES = ("conv2 forward", "fc6 forward")  # the order of the launches below


def main() -> int:
    from numba import cuda

    from refnet.kernels.cuda import conv2d, linear

    rng = np.random.default_rng(0)
    put = lambda *shape: cuda.to_device(rng.standard_normal(shape).astype(np.float32) * np.float32(0.01))
    conv2d.conv2d_forward(put(128, 256, 27, 27), put(128, 96, 27, 27), put(256, 96, 5, 5), put(256), 1, 2, 1)
    linear.linear_forward(put(128, 4096), put(128, 9216), put(4096, 9216), put(4096))
    cuda.synchronize()
    print("gpu_profile: launched", ", ".join(PASSES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
