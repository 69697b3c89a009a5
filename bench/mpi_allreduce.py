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
import math
import os
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


def _mpiexec():
    import shutil
    import sys

    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("mpiexec", path=search)


def run_launched(ranks, *, repeat=10, json_path=None, quick=False):
    """`refnet bench --mpi`: launch this module and MPI's ping-pong under mpiexec; print and save the comparison."""
    import subprocess
    import sys

    launcher = _mpiexec()
    if launcher is None:
        print("refnet bench --mpi: no mpiexec found; install the MPI extra: pip install 'refnet[mpi]'", file=sys.stderr)
        return 2
    if ranks < 2:
        print(f"refnet bench --mpi: --ranks must be at least 2, got {ranks}", file=sys.stderr)
        return 2
    elements = 1_000_000 if quick else SEED_PARAMETERS
    # one machine's cores shared out among the ranks, as the trainer does (refnet.distributed)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // ranks)))
    ours = subprocess.run(
        [launcher, "-n", str(ranks), sys.executable, "-m", "bench.mpi_allreduce", "--elements", str(elements),
         "--repeat", str(2 if quick else repeat)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if ours.returncode:
        print(ours.stderr, file=sys.stderr)
        return 1
    result = json.loads(ours.stdout.strip().splitlines()[-1])
    # mpi4py's ping-pong measures power-of-two sizes: the one nearest the gradient's
    size = str(1 << round(math.log2(result["bytes"])))
    pingpong = subprocess.run(
        [launcher, "-n", "2", sys.executable, "-m", "mpi4py.bench", "pingpong", "-m", size, "-n", size,
         "-l", "3" if quick else "10", "-s", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    rows = [line.split() for line in pingpong.stdout.splitlines() if line.strip() and not line.startswith("#")]
    if pingpong.returncode or not rows:
        print(pingpong.stdout + pingpong.stderr, file=sys.stderr)
        return 1
    result["pingpong_bytes"] = int(rows[-1][0])
    result["pingpong_GBps"] = float(rows[-1][1]) / 1e3  # MB/s -> GB/s
    result["bus_over_pingpong"] = result["bus_bandwidth_GBps"] / result["pingpong_GBps"]
    from mpi4py import MPI  # the launcher's library, for the record

    result["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip()
    print(f"MPI allreduce of the flat gradient ({result['elements']:,} float32, {result['bytes'] / 2**20:.0f} MiB) "
          f"over {result['ranks']} ranks, {result['mpi_library']}")
    print(f"  median {1e3 * result['median_s']:.1f} ms per step (min {1e3 * result['min_s']:.1f} ms)")
    print(f"  algorithm bandwidth {result['algo_bandwidth_GBps']:.2f} GB/s, bus bandwidth {result['bus_bandwidth_GBps']:.2f} GB/s")
    print(f"  MPI ping-pong at {result['pingpong_bytes']:,} bytes: {result['pingpong_GBps']:.2f} GB/s "
          f"-> allreduce bus bandwidth / ping-pong = {result['bus_over_pingpong']:.2f}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    main()
