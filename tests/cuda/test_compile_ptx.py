"""Every CUDA kernel compiles for a real GPU (sm_90) through NVVM and ptxas, with no register
spills: the part of a GPU build the CUDA simulator never
exercises (it runs the kernels as plain Python, so a construct Numba's CUDA target rejects, such
as a shared-array shape that is not a literal, passes there).

Runs without the simulator and without a GPU, wherever a CUDA toolkit is found (libnvvm,
libdevice and ptxas under CUDA_HOME or /usr/local/cuda*):

    .venv/bin/python -m pytest -q tests/cuda/test_compile_ptx.py

Under the simulator (`make test-cuda-sim`) the same checks run in a child pytest process
without it, since the simulator, once imported, cannot compile.

Each launcher is called with numpy arrays in place of device arrays; the kernel launch is
replaced by a PTX compilation for the argument types it would have been launched with.
"""

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from numba import config

CC = (9, 0)
pytestmark = pytest.mark.compile_only  # exempt from the directory's "no GPU" skip (see conftest)


def _toolkit():
    roots = [os.environ.get("CUDA_HOME", "")] + sorted(glob.glob("/usr/local/cuda*"), reverse=True)
    for root in roots:
        libdevice = os.path.join(root, "nvvm", "libdevice", "libdevice.10.bc")
        ptxas = os.path.join(root, "bin", "ptxas")
        if root and os.path.exists(libdevice) and os.path.exists(ptxas):
            return root, libdevice, ptxas
    return None


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Run every launcher once on tiny numpy arrays; returns {kernel name: ptxas report}."""
    if config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator cannot compile PTX; here these checks run in a child process (below)")
    toolkit = _toolkit()
    if toolkit is None:
        pytest.skip("no CUDA toolkit (libdevice + ptxas) under CUDA_HOME or /usr/local/cuda*")
    root, libdevice, ptxas = toolkit
    os.environ.setdefault("CUDA_HOME", root)

    from numba import cuda, typeof
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import libs, nvrtc, nvvm

    patches = pytest.MonkeyPatch()
    # numba-cuda asks NVRTC (absent from a bare toolkit) only for the list of architectures and
    # for libdevice's path; answer both directly.
    patches.setattr(nvrtc, "get_supported_ccs", lambda: (CC,))
    patches.setattr(libs, "get_libdevice", lambda: libdevice)
    patches.setattr(nvvm, "get_libdevice", lambda: libdevice)
    patches.setattr(cuda, "device_array", lambda shape, dtype=np.float32: np.zeros(shape, dtype))
    patches.setattr(cuda, "to_device", np.array)
    out_dir = tmp_path_factory.mktemp("ptx")
    reports = {}

    def compile_instead_of_launch(self, launch_config):
        def compile_ptx(*args):
            signature = tuple(typeof(a) for a in args)
            fastmath = self.targetoptions.get("fastmath", False)
            ptx, _ = cuda.compile_ptx(self.py_func, signature, cc=CC, fastmath=fastmath)
            path = out_dir / f"{self.py_func.__name__}-{len(reports)}.ptx"
            path.write_text(ptx)
            result = subprocess.run([ptxas, f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(path), "-o", os.devnull],
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"ptxas failed on {self.py_func.__name__}: {result.stderr}"
            reports[f"{self.py_func.__name__}#{len(reports)}"] = result.stderr

        return compile_ptx

    patches.setattr(dispatcher.CUDADispatcher, "__getitem__", compile_instead_of_launch)
    try:
        _run_every_launcher()
    finally:
        patches.undo()
    return reports


def _run_every_launcher():
    from refnet.kernels.cuda import (avgpool2d, conv2d, dropout, gemm, linear, lrn, maxpool2d, relu, sgd,
                                     softmax_cross_entropy)

    f = lambda *shape: np.zeros(shape, np.float32)
    x, w, b, y = f(2, 4, 9, 9), f(6, 2, 3, 3), f(6), f(2, 6, 5, 5)
    conv2d.conv2d_forward(y, x, w, b, 2, 1, 2)
    conv2d.conv2d_backward(f(*x.shape), f(*w.shape), f(6), x, w, y, 2, 1, 2)
    conv2d.conv2d_forward_reference(y, x, w, b, 2, 1, 2)
    conv2d.conv2d_backward_reference(f(*x.shape), f(*w.shape), f(6), x, w, y, 2, 1, 2)
    for trans_a in (False, True):
        for trans_b in (False, True):
            gemm.gemm(f(3, 4), f(5, 5), f(5, 5)[:, :4].copy() if not trans_b else f(4, 5), trans_a, trans_b, 1.0, 0.0)
    gemm.gemm_reference(f(3, 4), f(3, 5), f(5, 4), False, False, 1.0, 0.0)
    gemm.gemm(f(3, 4), f(3, 40), f(40, 4), False, False, 1.0, 0.0, splits=2)
    linear.linear_forward(f(3, 4), f(3, 5), f(4, 5), f(4))
    linear.linear_backward(f(3, 5), f(4, 5), f(4), f(3, 5), f(4, 5), f(3, 4))
    pooled, argmax = f(2, 4, 4, 4), np.zeros((2, 4, 4, 4), np.int32)
    maxpool2d.maxpool2d_forward(pooled, argmax, x, 3, 2)
    maxpool2d.maxpool2d_backward(f(*x.shape), pooled, argmax)
    avgpool2d.avgpool2d_forward(pooled, x, 3, 2)
    avgpool2d.avgpool2d_backward(f(*x.shape), pooled, 3, 2)
    lrn.lrn_forward(f(*x.shape), f(*x.shape), x, 5, 1e-4, 0.75, 2.0)
    lrn.lrn_backward(f(*x.shape), x, x, x, x, 5, 1e-4, 0.75, 2.0)
    relu.relu_forward(f(*x.shape), x)
    relu.relu_backward(f(*x.shape), x, x)
    mask = np.zeros(x.shape, np.uint8)
    dropout.dropout_forward(f(*x.shape), mask, x, 0.5, 7)
    dropout.dropout_eval(f(*x.shape), x, 0.5)
    dropout.dropout_backward(f(*x.shape), x, mask)
    logits, labels = f(3, 10), np.zeros(3, np.int32)
    softmax_cross_entropy.softmax_cross_entropy(f(3, 10), f(3), logits, labels)
    softmax_cross_entropy.softmax_cross_entropy_backward(f(3, 10), logits, labels)
    sgd.sgd_momentum_update(f(10), f(10), f(10), 0.01, 0.9, 5e-4)


def test_every_kernel_compiles_for_sm90(compiled):
    expected = {"tiled_kernel", "reduce_kernel", "_channel_sum_kernel", "_lrn_forward_kernel",
                "_dropout_forward_flat", "_softmax_cross_entropy_rows", "_maxpool_backward_kernel"}
    names = {key.split("#")[0] for key in compiled}
    assert expected <= names, f"not compiled: {sorted(expected - names)}"


def test_no_kernel_spills_registers(compiled):
    spills = {name: re.search(r"(\d+) bytes spill stores", report).group(1) for name, report in compiled.items()}
    assert all(v == "0" for v in spills.values()), f"register spills (bytes): {spills}"


def test_compile_checks_pass_in_a_process_without_the_simulator():
    if not config.ENABLE_CUDASIM:
        pytest.skip("runs the checks above in a child process; here they run directly")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__],
                           env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    if " passed" not in child.stdout:
        pytest.skip(child.stdout.strip().splitlines()[-1])
