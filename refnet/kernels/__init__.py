"""Hand-written kernels: `cpu/<op>.py` (@njit) beside `cuda/<op>.py` (@cuda.jit), one file per op."""
