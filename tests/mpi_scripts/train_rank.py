"""Run under mpiexec by tests/test_train_mpi.py: `refnet train` on every rank, watched from inside.

    python train_rank.py RECORD_DIR HANG_RANK HANG_STEP -- TRAIN ARGS...

Each rank writes RECORD_DIR/pid-<rank> when its training loop starts (so a test can signal one
rank alone) and RECORD_DIR/stop-<rank>.json with the step its loop ended at. Rank HANG_RANK
(-1: none) stops making progress before step HANG_STEP, as a rank stuck in I/O or a driver would.
"""

import faulthandler
import json
import os
import signal
import sys
import time

from refnet.cli import main
from refnet.trainer import Trainer

faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a stuck rank is
record_dir, hang_rank, hang_step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
assert sys.argv[4] == "--"
real_run, real_step = Trainer.run, Trainer._step


def run(self):
    with open(os.path.join(record_dir, f"pid-{self.world.rank}"), "w") as f:
        f.write(str(os.getpid()))
    try:
        return real_run(self)
    finally:
        with open(os.path.join(record_dir, f"stop-{self.world.rank}.json"), "w") as f:
            json.dump({"step": self.net.step}, f)


def step(self, x, labels):
    if self.world.rank == hang_rank and self.net.step + 1 == hang_step:
        time.sleep(600)
    return real_step(self, x, labels)


Trainer.run, Trainer._step = run, step
sys.exit(main(sys.argv[5:]))
