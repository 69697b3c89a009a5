"""refnet.distributed: the single-process world, batch shares, and real 2-rank runs under mpiexec."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from refnet.distributed import World, init_world, launched_under_mpi, local_batch_size, share_bounds

SCRIPT = os.path.join(os.path.dirname(__file__), "mpi_scripts", "allreduce_probe.py")


def find_mpiexec():
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("mpiexec", path=search)


needs_mpi = pytest.mark.skipif(
    find_mpiexec() is None, reason="no MPI launcher (mpiexec) installed: pip install 'refnet[mpi]'"
)


def test_single_process_world_without_launcher():
    assert not launched_under_mpi({})
    world = init_world({})
    assert world == World() and world.is_root and world.size == 1


def test_launcher_variables_are_recognised():
    assert launched_under_mpi({"PMI_RANK": "0", "PMI_SIZE": "2"})
    assert launched_under_mpi({"OMPI_COMM_WORLD_SIZE": "4"})


def test_global_batch_must_divide_by_ranks():
    assert local_batch_size(128, World(rank=1, size=4)) == 32
    with pytest.raises(ValueError, match="batch_size: expected a global batch that divides by the number of ranks \\(3\\), got 128"):
        local_batch_size(128, World(rank=0, size=3))


@pytest.mark.parametrize("n,size", [(8, 2), (7, 2), (10, 4), (3, 4)])
def test_rank_shares_are_disjoint_and_cover_the_batch(n, size):
    batch = np.arange(100, 100 + n)
    shares = [batch[slice(*share_bounds(n, r, size))] for r in range(size)]
    assert np.array_equal(np.concatenate(shares), batch)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def run_mpi(mode, n=2, timeout=60):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [find_mpiexec(), "-n", str(n), sys.executable, SCRIPT, mode],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@needs_mpi
def test_two_ranks_allreduce_weighted_mean_sum_and_shares():
    result = run_mpi("reduce")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("[")]
    rows = sorted(json.loads(line), key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == [0, 1] and all(r["size"] == 2 for r in rows)
    for r in rows:
        # rank 0 holds 1s with weight 3/4, rank 1 holds 2s with weight 1/4
        np.testing.assert_allclose(r["grad"], [0.75 * 1 + 0.25 * 2] * 7, rtol=1e-6)
        assert r["counts"] == [3, 30]  # (1 + 2), (10 + 20)
    assert rows[0]["share"] + rows[1]["share"] == list(range(7))


@needs_mpi
def test_a_rank_that_stops_makes_the_job_fail_with_a_message():
    result = run_mpi("hang", timeout=90)
    assert result.returncode != 0
    assert "made no progress for 2 s" in result.stderr and "Aborting the whole job" in result.stderr


def test_threads_are_shared_out_among_a_machines_ranks():
    assert World(local_size=2).threads_per_rank(cores=16) == 8
    assert World(local_size=4).threads_per_rank(cores=2) == 1
    assert World().threads_per_rank(cores=2) == 2


@needs_mpi
def test_bench_mpi_reports_allreduce_against_pingpong(tmp_path, capsys):
    from refnet.cli import main

    out = tmp_path / "mpi.json"
    assert main(["bench", "--mpi", "--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ranks"] == 2 and result["bytes"] == 4 * result["elements"]
    assert result["median_s"] > 0 and result["pingpong_GBps"] > 0
    assert result["bus_over_pingpong"] == pytest.approx(result["bus_bandwidth_GBps"] / result["pingpong_GBps"])
    assert "allreduce bus bandwidth / ping-pong" in capsys.readouterr().out
