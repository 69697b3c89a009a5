"""CUDA tests: run under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is first
imported, i.e. in the environment of the pytest process: `make test-cuda-sim`) or on a real GPU.
Anywhere else every test here is skipped with the reason.

The simulator runs one Python thread per CUDA thread, so shapes stay tiny; they are still chosen to
be ragged against the kernels' tile sizes.
"""

import os

import numpy as np
import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _skip_reason():
    if SIMULATOR:
        return None
    from numba import cuda

    if cuda.is_available():
        return None
    return "no CUDA GPU and NUMBA_ENABLE_CUDASIM is not 1 (run `make test-cuda-sim`)"


def pytest_configure(config):
    config.addinivalue_line("markers", "compile_only: compiles CUDA kernels to PTX; needs a CUDA toolkit, no GPU")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    # The whole-network comparison goes last: its CPU side compiles most of the CPU kernels, which
    # `make test`'s CPU part, running beside this one, has compiled into the shared cache by then.
    items.sort(key=lambda item: os.path.basename(str(item.fspath)) == "test_alexnet.py")
    # compile_only tests need neither a GPU nor the simulator (they decide for themselves)
    mine = [item for item in items if str(item.fspath).startswith(here) and not item.get_closest_marker("compile_only")]
    if not mine:
        return
    reason = _skip_reason()
    if reason:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


class _Gpu:
    """Moves test arrays to and from the device: `put` copies numpy to the device, `poisoned` is
    an output full of NaN (or the most negative integer) so an unwritten element shows, `get`
    copies back and checks every element was written."""

    def __init__(self):
        from numba import cuda

        self._cuda = cuda

    def put(self, a):
        return self._cuda.to_device(np.ascontiguousarray(a))

    def poisoned(self, shape, dtype=np.float32):
        from poison import poisoned

        return self._cuda.to_device(poisoned(shape, dtype))

    def get(self, a, name="output"):
        from poison import assert_all_written

        a = a.copy_to_host()
        assert_all_written(a, name)
        return a


@pytest.fixture
def gpu():
    return _Gpu()
