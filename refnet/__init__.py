"""refnet: a readable, hand-written Numba reference implementation of AlexNet.

`refnet.ops` is the one public op API (CPU @njit kernels for numpy arrays, @cuda.jit kernels for
Numba CUDA device arrays); `refnet.AlexNet` is the fixed network of Krizhevsky et al. (2012).
Heavy modules are imported on first use so that `refnet --help` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["AlexNet", "ops", "__version__"]


def __getattr__(name):
    if name == "AlexNet":
        from .model import AlexNet

        return AlexNet
    if name in ("ops", "data"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'refnet' has no attribute {name!r}")
