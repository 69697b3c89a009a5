"""Run under mpiexec by tests/test_distributed.py: rank 0 prints one JSON line with every rank's
results (gathered, since lines printed by several ranks at once can interleave)."""

import json
import sys
import time

import numpy as np

from refnet.distributed import allreduce_mean_, allreduce_sum, init_world, share_bounds

mode = sys.argv[1]
world = init_world()
if mode == "reduce":
    grad = np.full(7, world.rank + 1, dtype=np.float32)
    weight = 3 / 4 if world.rank == 0 else 1 / 4
    allreduce_mean_(grad, world, weight=weight)
    counts = allreduce_sum(np.array([1, 10], np.int64) * (world.rank + 1), world)
    share = list(range(*share_bounds(7, world.rank, world.size)))
    mine = {"rank": world.rank, "size": world.size, "grad": grad.tolist(), "counts": counts.tolist(), "share": share}
    rows = world.comm.gather(mine, root=0)
    if world.is_root:
        print(json.dumps(rows), flush=True)
elif mode == "hang":
    if world.rank == 1:
        time.sleep(120)  # a rank that stopped making progress
    allreduce_mean_(np.zeros(4, np.float32), world, timeout_s=2.0)
