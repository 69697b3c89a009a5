"""Synchronous data-parallel SGD over MPI (mpi4py): who am I, and one allreduce of the gradient.

Every rank holds the whole network, reads a disjoint share of every global batch (same
permutation on all ranks, from the shared seed), and after its backward pass the flat gradient
buffer is averaged over the ranks with ONE allreduce, so every rank applies the identical update:

    dw = sum_r (b_r / B) * dw_r       (dw_r is the mean over rank r's b_r samples, so this is the
                                       mean over the global batch of B = sum_r b_r samples)

The allreduce is host-staged: a CUDA gradient is copied into a pinned host buffer, reduced, and
copied back. It is started non-blocking and polled against a deadline: a rank that died or hangs
makes the others abort the whole job with a message naming the step, instead of waiting forever.
The deadline is the world's `timeout_s` (`refnet train --mpi-timeout`, 600 s by default).

Without an MPI launcher (no PMI/PMIx/Open MPI variables in the environment) nothing here imports
mpi4py and `init_world()` returns the single-process world.
"""

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

# Variables the common launchers set in every process they start (mpirun/mpiexec of MPICH and
# Open MPI, srun with PMI-2 or PMIx, Intel MPI, MVAPICH).
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; `comm` is None for a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # ranks on this machine
    comm: object = None
    timeout_s: float = DEFAULT_TIMEOUT_S  # a collective without progress this long aborts the job

    def threads_per_rank(self, cores=None) -> int:
        """This machine's cores shared out among its ranks: oversubscribed kernel threads spin
        against each other and against MPI's progress polling."""
        cores = cores or os.cpu_count() or 1
        return max(1, cores // self.local_size)

    @property
    def is_root(self) -> bool:
        return self.rank == 0


def launched_under_mpi(environ=None) -> bool:
    env = os.environ if environ is None else environ
    return any(v in env for v in _LAUNCHER_SIZE_VARS + _LAUNCHER_RANK_VARS)


def init_world(environ=None) -> World:
    """The single-process world, or the MPI world when an MPI launcher started this process."""
    if not launched_under_mpi(environ):
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(
            "this process was started by an MPI launcher but mpi4py is not installed: "
            "pip install 'refnet[mpi]' (mpi4py and an MPI runtime)"
        ) from None
    comm = MPI.COMM_WORLD
    # Ranks sharing a node get consecutive local ranks, whatever the launcher calls them.
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    world = World(rank=comm.Get_rank(), size=comm.Get_size(), local_rank=local.Get_rank(),
                  local_size=local.Get_size(), comm=comm)
    local.Free()
    return world


def local_batch_size(global_batch: int, world: World) -> int:
    """The per-rank batch; the global batch must divide by the number of ranks."""
    if global_batch % world.size:
        raise ValueError(
            f"batch_size: expected a global batch that divides by the number of ranks ({world.size}), got {global_batch}"
        )
    return global_batch // world.size


def share_bounds(n: int, rank: int, size: int):
    """[start, stop) of rank `rank`'s contiguous, disjoint share of `n` samples split over `size` ranks."""
    per_rank, extra = divmod(n, size)  # a last partial batch: the first `extra` ranks take one more
    start = rank * per_rank + min(rank, extra)
    return start, start + per_rank + (1 if rank < extra else 0)


@njit(cache=True, parallel=True)
def _scale_inplace(buf, factor):
    for i in prange(buf.shape[0]):
        buf[i] *= factor


def _wait(request, world: World, what: str, timeout_s=None):
    """Poll a non-blocking request; abort the whole job if it makes no progress in `timeout_s`
    (default: the world's)."""
    timeout_s = world.timeout_s if timeout_s is None else timeout_s
    start = time.monotonic()
    deadline = start + timeout_s
    while not request.Test():  # each Test also drives MPI's progress engine: poll without pause...
        now = time.monotonic()
        if now - start > 1.0:  # ...until the wait is clearly not a transfer but a slow peer
            time.sleep(0.001)
        if now > deadline:
            print(
                f"refnet: rank {world.rank}/{world.size}: {what} made no progress for {timeout_s:.0f} s; "
                "another rank has died or hangs. Aborting the whole job.",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0)  # MPI_Abort can kill the launcher's output forwarding before this line is shown
            world.comm.Abort(1)


def allreduce_mean_(flat, world: World, *, weight=None, staging=None, timeout_s=None, what="gradient allreduce"):
    """Average the 1-D float32 buffer `flat` (numpy or CUDA device array) over all ranks, in place.

    `weight` is this rank's share of the global batch (local samples / global samples); the
    default 1/size is right when all shares are equal. Each rank scales by its weight before the
    sum, so unequal shares (a last partial batch) still give the mean over the global batch.
    For a device buffer, `staging` is a host float32 buffer of the same size (pinned memory is
    faster; it is allocated when not given).
    """
    if world.size == 1:
        return flat
    from mpi4py import MPI

    from .device import is_device_array

    on_device = is_device_array(flat)
    if on_device:
        host = staging if staging is not None else np.empty(flat.shape, dtype=np.float32)
        flat.copy_to_host(host)
    else:
        host = flat
    _scale_inplace(host, np.float32(1.0 / world.size if weight is None else weight))
    request = world.comm.Iallreduce(MPI.IN_PLACE, host, op=MPI.SUM)
    _wait(request, world, what, timeout_s)
    if on_device:
        flat.copy_to_device(host)
    return flat


def allreduce_sum(values, world: World, *, timeout_s=None, what="metrics allreduce"):
    """A new array: the element-wise sum of the small 1-D float64 or int64 array `values` over all ranks."""
    values = np.ascontiguousarray(values)
    if world.size == 1:
        return values.copy()
    from mpi4py import MPI

    total = np.empty_like(values)
    request = world.comm.Iallreduce(values, total, op=MPI.SUM)
    _wait(request, world, what, timeout_s)
    return total


def broadcast_object(obj, world: World, *, root=0):
    """Rank `root`'s picklable `obj` on every rank (start-up state: resume decision, checkpoint)."""
    if world.size == 1:
        return obj
    return world.comm.bcast(obj, root=root)


def barrier(world: World, *, timeout_s=None, what="barrier"):
    if world.size > 1:
        _wait(world.comm.Ibarrier(), world, what, timeout_s)
