"""Data-parallel `refnet train` over MPI: 2 ranks on this machine, launched by the test with mpiexec.

Two ranks with the global batch split between them must follow one process training on the whole
batch (same seed, dropout on): same data order and augmentation (each rank takes its share of the
batch the one process would draw), same dropout masks (AlexNet.sample_offset), gradients averaged
by one allreduce. Only the summation order differs, hence a float tolerance.
"""

import json
import os
import subprocess
import sys

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


def mpi_train(argv, ranks=2):
    env = dict(os.environ, PYTHONUNBUFFERED="1", NUMBA_NUM_THREADS="1")
    return subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "refnet", *argv],
                          capture_output=True, text=True, timeout=600, env=env)  # fmt: skip


def assert_same_parameters(run_a, run_b):
    a, b = ck.load_checkpoint(os.path.join(run_a, "latest.h5")), ck.load_checkpoint(os.path.join(run_b, "latest.h5"))
    assert a.step == b.step
    for name in a.params:
        np.testing.assert_allclose(b.params[name], a.params[name], rtol=1e-4, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(b.momentum[name], a.momentum[name], rtol=1e-4, atol=2e-6, err_msg=name)
    return a, b


def test_two_ranks_follow_one_process_with_the_same_global_batch(data_dir, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(args(data_dir, single)) == 0
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


def test_a_two_rank_run_resumes_in_one_process(data_dir, tmp_path):
    straight, switched = tmp_path / "straight", tmp_path / "switched"
    assert main(args(data_dir, straight)) == 0
    result = mpi_train(args(data_dir, switched, "--max-steps", "3", "--save-every", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ck.load_checkpoint(switched / "latest.h5").step == 3
    assert main(args(data_dir, switched)) == 0  # the same command without mpiexec continues it
    assert_same_parameters(straight, switched)


def test_global_batch_must_divide_by_the_ranks(data_dir, tmp_path):
    result = mpi_train(args(data_dir, tmp_path / "run", "--batch-size", "3"))
    assert result.returncode != 0
    assert "--batch-size: batch_size: expected a global batch that divides by the number of ranks (2), got 3" in result.stderr
