"""Where a benchmark runs: the CPU (numpy arrays, wall clock) or a CUDA GPU (device arrays, events).

A case is written once against this small interface: it builds its inputs on the host, moves them
with `array` / `tensor`, allocates outputs with `empty`, and leaves timing to `time_refnet` /
`time_peer`. The GPU keeps several copies of each input (`copies`) and the cases rotate among them,
so that an input sitting in the 50 MB L2 cache from the previous call does not flatter either side.
"""

import math

import numpy as np

from .timing import SETTLE_S, copy_bandwidth_gbs, time_cpu, time_events, time_interleaved


class CpuBackend:
    name = "cpu"
    rate_unit, rate_scale = "GFLOP/s", 1e9

    def __init__(self, torch, warmup: int = 1, budget_s: float = 20.0, bandwidth_bytes: int = 256 << 20,
                 min_time_s: float = 0.25, settle_s: float = SETTLE_S):
        self.torch = torch
        self.settle_s = settle_s
        self.warmup = warmup
        self.budget_s = budget_s
        self.bandwidth_bytes = bandwidth_bytes
        self.min_time_s = min_time_s

    def array(self, host):
        return np.ascontiguousarray(host)

    def empty(self, shape, dtype=np.float32):
        return np.empty(shape, dtype=dtype)

    def zeros_like(self, a):
        return np.zeros(a.shape, dtype=a.dtype)

    def host(self, a):
        return np.asarray(a)

    def tensor(self, host):
        return self.torch.from_numpy(np.ascontiguousarray(host))

    def peer_host(self, t):
        return t.detach().numpy()

    def copies(self, nbytes: int) -> int:
        return 1

    def sync(self):
        pass

    def peer_sync(self):
        pass

    def peer_label(self, op: str) -> str:
        return "numpy" if op == "gemm" else "torch"

    def time_pair(self, run, peer, repeat, whole_network=False):
        """(refnet Timing, peer Timing or None), the two taking turns (see time_interleaved)."""
        fns = [run] if peer is None else [run, peer]
        budget = self.budget_s * (3 if whole_network else 1)
        timings = time_interleaved(fns, repeat, self.warmup, budget, min_time_s=self.min_time_s,
                                   settle_s=self.settle_s if peer is not None else 0.0)
        return timings[0], (timings[1] if peer is not None else None)

    def bandwidth_gbs(self) -> float:
        return copy_bandwidth_gbs(self.bandwidth_bytes)


class CudaBackend:
    name = "cuda"
    rate_unit, rate_scale = "TFLOP/s", 1e12

    def __init__(self, torch, warmup: int = 3, budget_s: float = 10.0):
        from numba import cuda

        self.cuda = cuda
        self.torch = torch
        self.warmup = warmup
        self.budget_s = budget_s
        device = cuda.get_current_device()
        try:
            self.l2_bytes = int(device.L2_CACHE_SIZE)
        except AttributeError:  # attribute missing in this numba-cuda: assume an H100/H200-sized L2
            self.l2_bytes = 50 << 20
        name = getattr(device, "name", "CUDA device")  # bytes in older numba, str in numba-cuda
        self.device_name = name.decode() if isinstance(name, bytes) else str(name)

    def array(self, host):
        return self.cuda.to_device(np.ascontiguousarray(host))

    def empty(self, shape, dtype=np.float32):
        return self.cuda.device_array(shape, dtype=dtype)

    def zeros_like(self, a):
        return self.cuda.to_device(np.zeros(a.shape, dtype=a.dtype))

    def host(self, a):
        return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)

    def tensor(self, host):
        return self.torch.from_numpy(np.ascontiguousarray(host)).to("cuda")

    def peer_host(self, t):
        return t.detach().cpu().numpy()

    def copies(self, nbytes: int) -> int:
        """Enough copies that one rotation streams at least twice the L2 cache (2 to 64)."""
        return max(2, min(64, math.ceil(2 * self.l2_bytes / max(nbytes, 1))))

    def sync(self):
        self.cuda.synchronize()

    def peer_sync(self):
        if self.torch is not None:
            self.torch.cuda.synchronize()

    def peer_label(self, op: str) -> str:
        return {"gemm": "cuBLAS", "conv": "cuDNN"}.get(op, "torch")

    def time_pair(self, run, peer, repeat, whole_network=False):
        """(refnet Timing, peer Timing or None): each side by its own CUDA events, one after the
        other (the GPU is not shared); whole-network steps by wall clock with synchronisation."""
        if whole_network:
            return self.time_wall(run, repeat), (self.time_wall(peer, repeat) if peer else None)
        return self.time_refnet(run, repeat), (self.time_peer(peer, repeat) if peer else None)

    def time_refnet(self, fn, repeat):
        return time_events(fn, repeat, lambda: self.cuda.event(),  # timing events by default
                           lambda start, end: start.elapsed_time(end), self.warmup, self.budget_s)

    def time_peer(self, fn, repeat):
        torch = self.torch
        return time_events(fn, repeat, lambda: torch.cuda.Event(enable_timing=True),
                           lambda start, end: start.elapsed_time(end), self.warmup, self.budget_s)

    def time_wall(self, fn, repeat):
        """Wall clock with a device synchronisation after each call (whole training steps)."""

        def synced(i):
            fn(i)
            self.sync()
            self.peer_sync()

        return time_cpu(synced, repeat, self.warmup, self.budget_s * 3)

    def bandwidth_gbs(self, nbytes: int = 1 << 30, repeat: int = 10) -> float:
        """Device-to-device copy of 1 GiB: bytes read + written per second."""
        src = self.cuda.to_device(np.ones(nbytes // 4, dtype=np.float32))
        dst = self.cuda.device_array_like(src)
        timing = self.time_refnet(lambda i: dst.copy_to_device(src), repeat)
        return 2 * nbytes / (timing.median_ms * 1e-3) / 1e9
