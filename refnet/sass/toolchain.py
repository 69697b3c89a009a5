"""Where ptxas, nvdisasm and libdevice are: NVIDIA's pip wheels first, then a system toolkit.

    pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm      (what `make test` installs)

puts ptxas, nvdisasm and libdevice under site-packages/nvidia/cu13/ (CUDA 12 wheels used
nvidia/cuda_nvcc/ and nvidia/cuda_nvdisasm/). A system toolkit has the same layout under
CUDA_HOME or /usr/local/cuda*: bin/ptxas, bin/nvdisasm, nvvm/libdevice/libdevice.10.bc.

Numba's NVVM writes PTX of its own CUDA release, and ptxas rejects PTX newer than itself, so among
all the copies found the newest ptxas is taken (a wheel's NVVM with an older system ptxas fails
with "Unsupported .version").
"""

import glob
import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass

INSTALL_HINT = "pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm (or install a CUDA toolkit and set CUDA_HOME)"
_LIBDEVICE = os.path.join("nvvm", "libdevice", "libdevice.10.bc")


class ToolchainNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Toolchain:
    ptxas: str
    nvdisasm: str
    libdevice: str
    ptxas_version: tuple  # (major, minor, patch)
    nvdisasm_version: tuple

    def describe(self):
        """"ptxas 13.5.37 (pip wheel), nvdisasm 13.5.37 (/usr/local/cuda-13.5/bin/nvdisasm)"."""

        def where(path):
            return "pip wheel" if f"{os.sep}site-packages{os.sep}" in path else path

        ptxas, dis = (".".join(str(v) for v in version) for version in (self.ptxas_version, self.nvdisasm_version))
        return f"ptxas {ptxas} ({where(self.ptxas)}), nvdisasm {dis} ({where(self.nvdisasm)})"


def wheel_roots():
    """Toolkit-shaped folders inside installed NVIDIA wheels (site-packages/nvidia/*)."""
    dirs = list(sys.path) + site.getsitepackages() + [site.getusersitepackages()]
    roots = []
    for d in dirs:
        for root in sorted(glob.glob(os.path.join(d, "nvidia", "*"))):
            if os.path.isdir(os.path.join(root, "bin")) and root not in roots:
                roots.append(root)
    return roots


def system_roots():
    """CUDA_HOME (or CUDA_PATH), then /usr/local/cuda*, newest name first."""
    roots = [os.environ.get(v, "") for v in ("CUDA_HOME", "CUDA_PATH")]
    roots += sorted(glob.glob("/usr/local/cuda*"), reverse=True)
    return [r for r in roots if r and os.path.isdir(r)]


def _version(tool):
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    match = re.search(r"V(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(v) for v in match.groups()) if match else None


def _newest(name, roots, on_path):
    """(path, version) of the newest working `name` in roots/bin (and on PATH), or None."""
    candidates = [os.path.join(r, "bin", name) for r in roots]
    if on_path and shutil.which(name):
        candidates.append(shutil.which(name))
    best = None
    for path in dict.fromkeys(os.path.realpath(c) for c in candidates if os.path.isfile(c)):
        version = _version(path)
        if version and (best is None or version > best[1]):
            best = (path, version)
    return best


def find_toolchain(system=True):
    """The Toolchain from the wheels (and, with `system`, a system toolkit and PATH), or
    ToolchainNotFound with the one line that says what to install."""
    roots = wheel_roots() + (system_roots() if system else [])
    ptxas = _newest("ptxas", roots, system)
    nvdisasm = _newest("nvdisasm", roots, system)
    missing = [name for name, found in (("ptxas", ptxas), ("nvdisasm", nvdisasm)) if found is None]
    if missing:
        raise ToolchainNotFound(f"{' and '.join(missing)} not found: {INSTALL_HINT}")
    # libdevice of the same release as ptxas when there is one; any otherwise
    ptxas_root = os.path.dirname(os.path.dirname(ptxas[0]))
    libdevices = [os.path.join(r, _LIBDEVICE) for r in [ptxas_root] + roots]
    libdevice = next((p for p in libdevices if os.path.isfile(p)), None)
    if libdevice is None:
        raise ToolchainNotFound(f"libdevice ({_LIBDEVICE}) not found: {INSTALL_HINT}")
    return Toolchain(ptxas[0], nvdisasm[0], libdevice, ptxas[1], nvdisasm[1])
