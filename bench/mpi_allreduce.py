"""Allreduce time per training step for AlexNet's flat gradient, against MPI's own point-to-point bandwidth.

Run by `refnet bench --mpi` (or directly: `mpiexec -n 2 python -m bench.mpi_allreduce`). Each
rank times refnet.distributed.allreduce_mean_ (what the trainer calls once per step) on a float32
buffer of the seed AlexNet's 62,378,344 parameters. Reported:

- median seconds per allreduce (after warm-up);
- algorithm bandwidth  = bytes / time;
- bus bandwidth        = 2 (n-1)/n * bytes / time  (the traffic a ring allreduce must move per rank,
  the convention of nccl-tests), comparable with the link bandwidth below;
- the peer: `python -m mpi4py.bench pingpong` at the same message size, i.e. the bandwidth the MPI
  library itself reaches between two ranks for that message.
"""

import argparse
import json
import statistics
import time

import numpy as np

SEED_PARAMETERS = 62_378_344


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=SEED_PARAMETERS)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    from refnet.distributed import allreduce_mean_, barrier, init_world

    world = init_world()
    grad = np.ones(args.elements, dtype=np.float32)
    times = []
    for i in range(args.warmup + args.repeat):
        barrier(world)
        t0 = time.perf_counter()
        allreduce_mean_(grad, world)
        elapsed = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(elapsed)
    if world.size > 1:
        # the slowest rank decides the step time
        gathered = world.comm.gather(times, root=0)
        if world.is_root:
            times = [max(per_rank) for per_rank in zip(*gathered)]
    if world.is_root:
        seconds = statistics.median(times)
        nbytes = grad.nbytes
        print(json.dumps({
            "ranks": world.size,
            "elements": args.elements,
            "bytes": nbytes,
            "median_s": seconds,
            "min_s": min(times),
            "algo_bandwidth_GBps": nbytes / seconds / 1e9,
            "bus_bandwidth_GBps": 2 * (world.size - 1) / world.size * nbytes / seconds / 1e9,
        }))


if __name__ == "__main__":
    main()
