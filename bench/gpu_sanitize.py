"""One launch of every CUDA kernel at small shapes, for compute-sanitizer on a GPU:

    compute-sanitizer --tool racecheck --error-exitcode 3 python3 bench/gpu_sanitize.py
    compute-sanitizer --tool memcheck  --error-exitcode 3 python3 bench/gpu_sanitize.py

racecheck reports shared-memory races (a missing syncthreads in a tiled kernel) that the CUDA
simulator cannot show; memcheck reports out-of-bounds and misaligned accesses. The launches are
refnet.sass.small_launches' (the ones test_compile_ptx compiles), on random data. Also runs under
NUMBA_ENABLE_CUDASIM=1 (slowly), which checks the script itself without a GPU.
"""

import sys
import time

import numpy as np


def main() -> int:
    from numba import cuda

    from refnet.sass.small_launches import launch_every_kernel

    if not cuda.is_available():
        print("gpu_sanitize: no CUDA GPU (and NUMBA_ENABLE_CUDASIM is not 1)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)

    def device_array(*shape, dtype=np.float32):
        # positive values: LRN's scale must be (a real GPU would give NaN, the simulator raises)
        host = rng.uniform(0.1, 1.0, shape).astype(np.float32) if dtype == np.float32 else np.zeros(shape, dtype)
        return cuda.to_device(host)

    started = time.time()
    launch_every_kernel(device_array)
    cuda.synchronize()
    print(f"gpu_sanitize: every kernel launched once and finished ({time.time() - started:.1f} s with compilation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
