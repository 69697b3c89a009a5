"""Run refnet's CUDA launchers with no GPU: every launch becomes a record, every kernel a cubin.

    with capturing() as launches:
        conv2d.conv2d_forward(y, x, w, b, 4, 0, 1)      # numpy arrays in place of device arrays
    kernel = compile_kernel(launches[0], toolchain)     # PTX, ptxas report, SASS listing

Inside `capturing`, `kernel[grid, block](*args)` records a Launch (the kernel, grid, block and
arguments) instead of running, and `cuda.device_array` / `cuda.to_device` give numpy arrays, so a
launcher runs its host-side logic (grid sizes, split-K choices, workspaces) unchanged. Shapes are
what decide that logic; numpy's zeros cost no memory until written, so batch-128 AlexNet shapes
are cheap.

`compile_kernel` compiles the recorded kernel for the argument types it was launched with:
numba-cuda -> PTX (NVVM) -> `ptxas -arch=sm_XY -O3 -v` -> cubin -> `nvdisasm -c` -> SASS. A kernel
compiled once (same function, types, options) is not compiled again in this process.
"""

import contextlib
import inspect
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field

import numpy as np

from . import disasm


@dataclass
class Launch:
    dispatcher: object  # the numba-cuda kernel
    grid: tuple  # (x, y, z) blocks
    block: tuple  # (x, y, z) threads
    args: dict  # parameter name -> value, in order

    @property
    def name(self):
        return self.dispatcher.py_func.__name__

    @property
    def threads_per_block(self):
        return math.prod(self.block)

    @property
    def blocks(self):
        return math.prod(self.grid)

    def arrays(self):
        return [a for a in self.args.values() if isinstance(a, np.ndarray)]


@dataclass
class Kernel:
    """One compiled kernel: its ptxas report and its SASS."""

    name: str
    ptx: str
    ptxas_report: str
    sass: str
    listing: disasm.Listing = field(repr=False)
    registers: int
    shared_bytes: int  # static shared memory per block
    stack_bytes: int  # per-thread stack frame (local memory)
    spill_bytes: int  # spill stores + spill loads


def _dim3(value):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return tuple(int(v) for v in value) + (1,) * (3 - len(value))


@contextlib.contextmanager
def capturing():
    """Within the block, kernel launches are recorded into the yielded list and not run."""
    from numba import cuda
    from numba.cuda import dispatcher

    launches = []

    def record(self, config):
        grid, block = config[0], config[1]

        def launch(*args):
            names = list(inspect.signature(self.py_func).parameters)
            launches.append(Launch(self, _dim3(grid), _dim3(block), dict(zip(names, args))))

        return launch

    saved = (dispatcher.CUDADispatcher.__getitem__, cuda.device_array, cuda.to_device)
    dispatcher.CUDADispatcher.__getitem__ = record
    cuda.device_array = lambda shape, dtype=np.float32, **kw: np.zeros(shape, dtype)
    cuda.to_device = lambda a, **kw: np.array(a)
    try:
        yield launches
    finally:
        dispatcher.CUDADispatcher.__getitem__, cuda.device_array, cuda.to_device = saved
        _forget_stand_ins()


def _forget_stand_ins():
    """Launchers keep device buffers in module-level caches (the split-K workspace, zero biases):
    drop the numpy stand-ins put there while capturing, so that a real launch later in the same
    process (a GPU test run) allocates real ones."""
    import sys

    for name, module in list(sys.modules.items()):
        if not name.startswith("refnet.kernels.cuda"):
            continue
        for attribute, cache in vars(module).items():
            if attribute.startswith("__"):
                continue
            if isinstance(cache, list):
                cache[:] = [v for v in cache if not isinstance(v, np.ndarray)]
            elif isinstance(cache, dict):
                for key in [k for k, v in cache.items() if isinstance(v, np.ndarray)]:
                    del cache[key]


@contextlib.contextmanager
def _numba_sees(toolchain, cc):
    """numba-cuda asks NVRTC (not needed to compile) only for the list of architectures and for
    libdevice's path: answer both from the toolchain."""
    from numba.cuda.cudadrv import libs, nvrtc, nvvm

    saved = (nvrtc.get_supported_ccs, libs.get_libdevice, nvvm.get_libdevice)
    nvrtc.get_supported_ccs = lambda: (cc,)
    libs.get_libdevice = nvvm.get_libdevice = lambda: toolchain.libdevice
    try:
        yield
    finally:
        nvrtc.get_supported_ccs, libs.get_libdevice, nvvm.get_libdevice = saved


def ptx_of(launch, toolchain, cc=(9, 0)):
    """The PTX of the launched kernel for the types of the launch's arguments."""
    from numba import cuda, typeof

    signature = tuple(typeof(a) for a in launch.args.values())
    options = launch.dispatcher.targetoptions
    # the kernel's own launch bounds set ptxas's register cap: without them the counts are of
    # another kernel than the one that runs
    with _numba_sees(toolchain, cc):
        ptx, _ = cuda.compile_ptx(launch.dispatcher.py_func, signature, cc=cc, fastmath=options.get("fastmath", False),
                                  launch_bounds=options.get("launch_bounds"))  # fmt: skip
    return ptx


def _report_number(pattern, report):
    match = re.search(pattern, report)
    return int(match.group(1)) if match else 0


_COMPILED = {}


def compile_kernel(launch, toolchain, cc=(9, 0)):
    """The Kernel (ptxas report and SASS) of a recorded launch; RuntimeError if ptxas fails."""
    from numba import typeof

    key = (launch.dispatcher, tuple(typeof(a) for a in launch.args.values()), cc, toolchain)
    if key in _COMPILED:
        return _COMPILED[key]
    ptx = ptx_of(launch, toolchain, cc)
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory(prefix="refnet-sass-") as tmp:
        ptx_path, cubin = os.path.join(tmp, "kernel.ptx"), os.path.join(tmp, "kernel.cubin")
        with open(ptx_path, "w") as f:
            f.write(ptx)
        result = subprocess.run([toolchain.ptxas, f"-arch={arch}", "-O3", "-v", ptx_path, "-o", cubin],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ptxas failed on {launch.name}: {result.stderr.strip()}")
        report = result.stderr
        sass = subprocess.run([toolchain.nvdisasm, "-c", cubin], capture_output=True, text=True, check=True).stdout
    kernel = Kernel(
        name=launch.name,
        ptx=ptx,
        ptxas_report=report,
        sass=sass,
        listing=disasm.parse(sass),
        registers=_report_number(r"Used (\d+) registers", report),
        shared_bytes=_report_number(r"(\d+) bytes smem", report),
        stack_bytes=_report_number(r"(\d+) bytes stack frame", report),
        spill_bytes=_report_number(r"(\d+) bytes spill stores", report) + _report_number(r"(\d+) bytes spill loads", report),
    )
    _COMPILED[key] = kernel
    return kernel
