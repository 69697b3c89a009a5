"""Data-parallel `refnet train` over MPI: 2 and 4 ranks on this machine, launched by the test with mpiexec.

Two ranks with the global batch split between them must follow one process training on the whole
batch (same seed, dropout on): same data order and augmentation (each rank takes its share of the
batch the one process would draw), same dropout masks (AlexNet.sample_offset), gradients averaged
by one allreduce. Only the summation order differs, hence a float tolerance. Runs move between
one process and several ranks; SIGTERM to one rank stops every rank at the same step; a rank
that hangs makes `refnet train` abort the job; rank 0 alone prints.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_distributed import find_mpiexec
from test_train import CROP, write_learnable_shards

from refnet import checkpoint as ck
from refnet.cli import main

pytestmark = pytest.mark.skipif(
    find_mpiexec() is None, reason="no MPI launcher (mpiexec) installed: pip install 'refnet[mpi]'"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_learnable_shards(tmp_path_factory.mktemp("mpi_shards"), 16, 5, shard_size=6)


def args(data_dir, run_dir, *extra):
    return ["train", "--data", data_dir, "--run", str(run_dir), "--input-size", str(CROP), "--batch-size", "4",
            "--epochs", "2", "--lr", "0.02", "--seed", "5", "--quiet", "--log-every", "1", *extra]  # fmt: skip


MPI_ENV = dict(os.environ, PYTHONUNBUFFERED="1", NUMBA_NUM_THREADS="1")
WATCHED_RANKS = os.path.join(os.path.dirname(__file__), "mpi_scripts", "train_rank.py")


def mpi_train(argv, ranks=2):
    return subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "refnet", *argv],
                          capture_output=True, text=True, timeout=600, env=MPI_ENV)  # fmt: skip


def start_watched_ranks(record_dir, argv, ranks, hang_rank=-1, hang_step=0):
    """mpiexec of tests/mpi_scripts/train_rank.py: `refnet train` on each rank, recording its pid and where it stopped."""
    os.makedirs(record_dir, exist_ok=True)
    command = [find_mpiexec(), "-n", str(ranks), sys.executable, WATCHED_RANKS, str(record_dir), str(hang_rank),
               str(hang_step), "--", *argv]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=MPI_ENV)


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory):
    """The 2-epoch run of one process that the runs over several ranks are compared with."""
    run_dir = tmp_path_factory.mktemp("one_process") / "run"
    assert main(args(data_dir, run_dir)) == 0
    return run_dir


def assert_same_parameters(run_a, run_b):
    a, b = ck.load_checkpoint(os.path.join(run_a, "latest.h5")), ck.load_checkpoint(os.path.join(run_b, "latest.h5"))
    assert a.step == b.step
    for name in a.params:
        np.testing.assert_allclose(b.params[name], a.params[name], rtol=1e-4, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(b.momentum[name], a.momentum[name], rtol=1e-4, atol=2e-6, err_msg=name)
    return a, b


def test_two_ranks_follow_one_process_with_the_same_global_batch(data_dir, one_process, tmp_path):
    single, double = one_process, tmp_path / "double"
    result = mpi_train(args(data_dir, double))
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = assert_same_parameters(single, double)
    assert one.step == 8 and one.epoch == 2
    # rank 0 alone wrote the log, and its epoch records count every rank's images
    epochs_one, epochs_two = epoch_records(single), epoch_records(double)
    assert len(epochs_one) == len(epochs_two) == 2
    for a, b in zip(epochs_one, epochs_two):
        for key in ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error"):
            assert a[key] == b[key], key
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)


def epoch_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


def test_a_two_rank_run_resumes_in_one_process(data_dir, one_process, tmp_path):
    straight, switched = one_process, tmp_path / "switched"
    result = mpi_train(args(data_dir, switched, "--max-steps", "3", "--save-every", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ck.load_checkpoint(switched / "latest.h5").step == 3
    assert main(args(data_dir, switched)) == 0  # the same command without mpiexec continues it
    assert_same_parameters(straight, switched)


def test_global_batch_must_divide_by_the_ranks(data_dir, tmp_path):
    result = mpi_train(args(data_dir, tmp_path / "run", "--batch-size", "3"))
    assert result.returncode != 0
    assert "--batch-size: batch_size: expected a global batch that divides by the number of ranks (2), got 3" in result.stderr


def test_a_one_process_run_resumes_on_two_ranks_and_rank_0_alone_speaks(data_dir, one_process, tmp_path):
    switched = tmp_path / "switched"
    switched.mkdir()
    shutil.copyfile(one_process / "ckpt-0001.h5", switched / "latest.h5")  # the one process after epoch 1
    result = mpi_train(args(data_dir, switched), ranks=2)  # epoch 2: a global batch of 4 over the ranks
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_parameters(one_process, switched)
    closing = [line for line in result.stdout.splitlines() if line.startswith("refnet train:")]
    assert len(closing) == 1 and closing[0].startswith("refnet train: finished at step 8 (epoch 2)"), result.stdout


def wait_for(condition, proc, what, timeout_s=300):
    """Poll until condition() holds; the job must still be running meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def finish(proc, records, timeout_s=300):
    """(stdout, stderr) of a watched job; one that outlives timeout_s is killed, every rank with it."""
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for pid_file in records.glob("pid-*"):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the job did not end in {timeout_s} s:\n{err[-3000:]}")


def test_sigterm_to_one_of_four_ranks_stops_every_rank_at_the_same_step(data_dir, tmp_path):
    """4 ranks, a global batch of 4: one image each; rank 0 alone says it stopped."""
    ranks = 4
    run_dir, records = tmp_path / "run", tmp_path / "records"
    # ranks stopping at different steps would wait for each other: the timeout turns that into a failure
    proc = start_watched_ranks(records, args(data_dir, run_dir, "--epochs", "1000", "--mpi-timeout", "60"), ranks)
    last = records / f"pid-{ranks - 1}"
    logged = run_dir / "metrics.jsonl"
    wait_for(lambda: last.exists() and logged.exists() and logged.read_text().strip(), proc, "the first step")
    os.kill(int(last.read_text()), signal.SIGTERM)  # the last rank alone: the others learn it from the vote
    _, err = finish(proc, records)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    stops = [json.loads((records / f"stop-{rank}.json").read_text())["step"] for rank in range(ranks)]
    saved = ck.load_checkpoint(run_dir / "latest.h5").step
    assert stops == [saved] * ranks and saved >= 1
    said = [line for line in err.splitlines() if line.startswith("refnet train:")]
    assert len(said) == 1 and f"stopped by SIGTERM after step {saved};" in said[0], err[-3000:]


def test_a_hung_rank_makes_train_abort_the_job_after_the_timeout(data_dir, tmp_path):
    run_dir, records = tmp_path / "run", tmp_path / "records"
    proc = start_watched_ranks(records, args(data_dir, run_dir, "--mpi-timeout", "3"), 2, hang_rank=1, hang_step=2)
    out, err = finish(proc, records)
    assert proc.returncode != 0, (out, err)
    assert "rank 0/2: the gradient allreduce of step 2 made no progress for 3 s" in err, err[-3000:]
    assert "refnet train: finished" not in out
