"""CUDA kernels (@cuda.jit, numba-cuda). Same file names as refnet/kernels/cpu, one per op."""
