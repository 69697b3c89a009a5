"""Run under mpiexec by tests/test_distributed.py: prints one JSON line per rank."""

import json
import sys
import time

import numpy as np

from refnet.distributed import allreduce_mean_, broadcast_, init_world, rank_share

mode = sys.argv[1]
world = init_world()
if mode == "reduce":
    grad = np.full(7, world.rank + 1, dtype=np.float32)
    weight = 3 / 4 if world.rank == 0 else 1 / 4
    allreduce_mean_(grad, world, weight=weight)
    params = np.arange(3, dtype=np.float32) * (world.rank + 1)
    broadcast_(params, world)
    share = rank_share(np.arange(7), world).tolist()
    print(json.dumps({"rank": world.rank, "size": world.size, "grad": grad.tolist(), "params": params.tolist(),
                      "share": share}), flush=True)
elif mode == "hang":
    if world.rank == 1:
        time.sleep(120)  # a rank that stopped making progress
    allreduce_mean_(np.zeros(4, np.float32), world, timeout_s=2.0)
