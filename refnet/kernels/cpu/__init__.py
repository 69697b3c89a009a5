"""CPU kernels (@njit, cache=True). Each file starts with the formula and the layouts it implements."""
