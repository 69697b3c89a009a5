"""Every CUDA kernel compiles for a real GPU (sm_90) through NVVM and ptxas, with no register
spills: the part of a GPU build the CUDA simulator never
exercises (it runs the kernels as plain Python, so a construct Numba's CUDA target rejects, such
as a shared-array shape that is not a literal, passes there).

Runs without the simulator and without a GPU wherever ptxas, nvdisasm and libdevice are found:
NVIDIA's pip wheels (nvidia-cuda-nvcc, nvidia-cuda-nvdisasm: the `test` extra) or a CUDA toolkit
under CUDA_HOME or /usr/local/cuda* (refnet.sass.toolchain; NVVM itself is numba-cuda's):

    .venv/bin/python -m pytest -q tests/cuda/test_compile_ptx.py

Under the simulator (`make test-cuda-sim`) the same checks run in a child pytest process
without it, since the simulator, once imported, cannot compile.

Each launcher is called with numpy arrays in place of device arrays; the kernel launch is
recorded and compiled for the argument types it would have been launched with
(refnet.sass.capture, which `refnet sass` uses too).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from numba import config

CC = (9, 0)
pytestmark = pytest.mark.compile_only  # exempt from the directory's "no GPU" skip (see conftest)


@pytest.fixture(scope="module")
def toolchain():
    if config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator cannot compile PTX; here these checks run in a child process (below)")
    from refnet.sass.toolchain import ToolchainNotFound, find_toolchain

    try:
        return find_toolchain()
    except ToolchainNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def compiled(toolchain):
    """Run every launcher once on tiny numpy arrays; returns {kernel name#i: capture.Kernel}."""
    from refnet.sass.capture import capturing, compile_kernel
    from refnet.sass.small_launches import launch_every_kernel

    with capturing() as launches:
        launch_every_kernel(lambda *shape, dtype=np.float32: np.zeros(shape, dtype))
    return {f"{launch.name}#{i}": compile_kernel(launch, toolchain, CC) for i, launch in enumerate(launches)}


def test_every_kernel_compiles_for_sm90(compiled):
    expected = {"tiled_kernel", "reduce_kernel", "_channel_sum_kernel", "_lrn_forward_kernel",
                "_dropout_forward_flat", "_softmax_cross_entropy_rows", "_maxpool_backward_kernel",
                "_flag_non_finite", "_avgpool_backward_kernel", "_filter_reference_kernel"}
    names = {key.split("#")[0] for key in compiled}
    assert expected <= names, f"not compiled: {sorted(expected - names)}"


def test_no_kernel_spills_registers(compiled):
    spills = {name: kernel.spill_bytes for name, kernel in compiled.items() if kernel.spill_bytes}
    assert not spills, f"register spills (bytes stored + loaded): {spills}"


def test_the_tools_are_found_in_the_pip_wheels_alone(toolchain):
    """What a machine with no CUDA toolkit gets from `pip install nvidia-cuda-nvcc
    nvidia-cuda-nvdisasm`: ptxas, nvdisasm and libdevice from site-packages compile a kernel."""
    from refnet.kernels.cuda import relu
    from refnet.sass import toolchain as tools
    from refnet.sass.capture import capturing, compile_kernel

    if not tools.wheel_roots():
        pytest.skip("NVIDIA's wheels are not installed (the `test` extra installs them)")
    wheels = tools.find_toolchain(system=False)
    roots = tuple(os.path.realpath(r) for r in tools.wheel_roots())
    assert all(path.startswith(roots) for path in (wheels.ptxas, wheels.nvdisasm, wheels.libdevice)), wheels
    with capturing() as launches:
        relu.relu_forward(np.zeros(10, np.float32), np.zeros(10, np.float32))
    kernel = compile_kernel(launches[0], wheels, CC)
    assert kernel.registers > 0 and any(ins.base == "EXIT" for ins in kernel.listing.entry.instructions)


def test_a_missing_tool_says_what_to_install(monkeypatch):
    from refnet.sass import toolchain as tools

    monkeypatch.setattr(tools, "wheel_roots", lambda: [])
    with pytest.raises(tools.ToolchainNotFound, match="pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm"):
        tools.find_toolchain(system=False)


def test_compile_checks_pass_in_a_process_without_the_simulator():
    """Every compile_only test of this directory (this file's and test_sass.py's), in one child
    process, so that each kernel is compiled once for both."""
    if not config.ENABLE_CUDASIM:
        pytest.skip("runs the compile_only checks in a child process; here they run directly")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "compile_only",
                            os.path.dirname(__file__)], env=env, capture_output=True, text=True)  # fmt: skip
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    if " passed" not in child.stdout:
        pytest.skip(child.stdout.strip().splitlines()[-1])
