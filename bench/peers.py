"""The libraries refnet is measured against: numpy's matmul (BLAS) and PyTorch (CPU or CUDA).

PyTorch is optional: `load_torch()` returns None when it is not installed and the benchmark then
prints "n/a" in the peer columns. Conventions that differ between PyTorch and the paper are
converted here, in one place:
- LRN: PyTorch divides alpha by the window size (as Caffe and cuDNN do); the paper does not, so
  PyTorch gets alpha * size.
- Dropout at test time: PyTorch's dropout scales by 1/(1-p) while training and is the identity at
  test time; the paper (and refnet) keep units unscaled while training and multiply by (1-p) at test
  time. The twin network below multiplies by (1-p) in eval mode so both compute the same logits.
- SGD: PyTorch keeps v' = m*v' + (dw + wd*w), w -= lr*v'; the paper keeps v = m*v - wd*lr*w - lr*dw,
  w += v. With a constant learning rate v = -lr*v' and the weights agree step for step.
"""

import os
import platform

import numpy as np

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


def load_torch(device: str = "cpu", threads: int | None = None):
    """The torch module set up for a fair fp32 comparison, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    if threads is not None:
        torch.set_num_threads(threads)
    if device == "cuda":
        # Both sides compute in plain fp32: no TF32 tensor-core shortcuts for the peer.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape
    return torch


def numpy_blas_info() -> str:
    """Which BLAS numpy's matmul uses, and its threads when that can be read."""
    import numpy as np

    name = "unknown BLAS"
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        name = " ".join(str(blas.get(k, "")) for k in ("name", "version")).strip() or name
    except Exception:  # older numpy without mode="dicts": the name stays unknown, not fatal
        pass
    try:
        from threadpoolctl import threadpool_info

        threads = [f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
                   if i.get("user_api") == "blas"]
        return name + (" (" + ", ".join(threads) + ")" if threads else "")
    except ImportError:
        return name + _bundled_openblas_details()


def _bundled_openblas_details() -> str:
    """Config string and thread count of the OpenBLAS a numpy wheel bundles, read with ctypes
    (what threadpoolctl would report, without depending on it)."""
    import ctypes
    import glob

    import numpy as np

    for path in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)
            get_config, get_threads = lib.scipy_openblas_get_config64_, lib.scipy_openblas_get_num_threads64_
        except (OSError, AttributeError):
            continue
        get_config.restype, get_threads.restype = ctypes.c_char_p, ctypes.c_int
        return f" ({get_config().decode().strip()}, {get_threads()} threads)"
    return " (threads unknown)"


def cpu_model() -> str:
    """The processor's model name as lscpu/proc report it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def numpy_gemm(a, b, trans_a: bool, trans_b: bool, out=None):
    """op(a) @ op(b) with numpy (the transposes are views: BLAS reads them in place), into `out`
    when given: as refnet writes into its c, so that neither side pays for a fresh result's pages."""
    return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)


def torch_alexnet(torch, variant: str = "seed", input_size: int = 227, num_classes: int = 1000,
                  dropout: float = 0.5):
    """An nn.Module computing what refnet.AlexNet computes, with the same parameter names."""
    nn, F = torch.nn, torch.nn.functional
    from refnet.model import VARIANT_ORDER

    from .shapes import alexnet_shapes

    shapes = alexnet_shapes(1, input_size, variant, num_classes)
    convs = {c.name: c for c in shapes.convs}

    class TorchAlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            for name, c in convs.items():
                setattr(self, name, nn.Conv2d(c.c, c.k, c.r, stride=c.stride, padding=c.pad, groups=c.groups))
            for name, fan_in, fan_out in shapes.fcs:
                setattr(self, name, nn.Linear(fan_in, fan_out))

        def _lrn(self, x):
            return F.local_response_norm(x, LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)

        def _dropout(self, x):
            if dropout == 0:
                return x
            return F.dropout(x, dropout, training=True) if self.training else x * (1 - dropout)

        def _pool_and_norm(self, x):  # layers 1-2, in the variant's order (refnet.model VARIANT_ORDER)
            if VARIANT_ORDER[variant] == "lrn-pool":
                return F.max_pool2d(self._lrn(x), 3, 2)
            return self._lrn(F.max_pool2d(x, 3, 2))

        def forward(self, x):
            x = self._pool_and_norm(F.relu(self.conv1(x)))
            x = self._pool_and_norm(F.relu(self.conv2(x)))
            x = F.relu(self.conv3(x))
            x = F.relu(self.conv4(x))
            x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
            x = torch.flatten(x, 1)
            x = self._dropout(F.relu(self.fc6(x)))
            x = self._dropout(F.relu(self.fc7(x)))
            return self.fc8(x)

    return TorchAlexNet()


def torch_training_step(torch, model, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
    """step(x, labels) -> loss: forward, cross-entropy, backward and PyTorch's momentum SGD."""
    F = torch.nn.functional
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()

    def step(x, labels):
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step
