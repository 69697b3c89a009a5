"""Split-K of the CUDA tiled GEMM (refnet/kernels/cuda/_tiled.py), its arithmetic checked on the CPU:
whatever number of splits is chosen or asked for, on whatever GPU size, the K ranges the launch
gives its blocks cover 0..K-1 exactly once, none empty. The launch is run with stand-ins that record
its arguments instead of kernels (the results of each choice are tested in tests/cuda)."""

import numpy as np
import pytest

from refnet.kernels.cuda import _tiled


class RecordedKernel:
    """Stands for a CUDA kernel: `kernel[grid, threads](*args)` records grid and args."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, launch_config):
        return lambda *args: self.calls.append((launch_config, args))


def launch_ranges(M, N, K, groups, splits=None):
    """The K ranges of the launch's blocks: [(start, stop)] for split s of every group, and the grid."""
    tiled, reduce = RecordedKernel(), RecordedKernel()
    c, unread, no_table = np.empty((M, N), np.float32), np.empty(1, np.float32), np.empty(4, np.int32)
    _tiled.launch((tiled, reduce), c, unread, unread, unread, (0,), M, N, K, groups, splits=splits,
                  a_table=no_table, b_table=no_table)  # fmt: skip
    (grid, _), args = tiled.calls[0]
    k_per_split, launched = int(args[10]), int(args[11])
    assert grid[2] == groups * launched and bool(reduce.calls) == (launched > 1)
    return [(s * k_per_split, min(K, (s + 1) * k_per_split)) for s in range(launched)], k_per_split


class Workspace:
    """Stands for the device workspace of the partial sums (never read here, so never allocated)."""

    def __getitem__(self, index):
        return self

    def reshape(self, *shape):
        return self


@pytest.fixture(params=[1, 7, 80, 132], ids=lambda sms: f"{sms} SMs")
def gpu_of(request, monkeypatch):
    monkeypatch.setattr(_tiled, "_sm_count", lambda: request.param)
    monkeypatch.setattr(_tiled, "_workspace", lambda count: Workspace())
    return request.param


SHAPES = [(8192, 8192, 4096, 1), (96, 363, 128 * 55 * 55, 1), (96, 363, 256, 1), (64, 64, 1, 1), (1, 1, 1000, 2),
          (128, 1200, 9 * 128 + 3, 2), (256, 4096, 9216, 1), (4096, 9216, 32, 1)]  # fmt: skip


@pytest.mark.parametrize("M, N, K, groups", SHAPES)
@pytest.mark.parametrize("asked", [None, 1, 3, 64, 10**6])
def test_split_ranges_cover_k_exactly_once(gpu_of, M, N, K, groups, asked):
    ranges, k_per_split = launch_ranges(M, N, K, groups, asked)
    assert ranges[0][0] == 0 and ranges[-1][1] == K
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))  # back to back
    assert all(start < stop for start, stop in ranges)  # none empty
    assert k_per_split % _tiled.TILE_K == 0  # every range but the last is whole tiles of K


@pytest.mark.parametrize("M, N, K, groups", SHAPES)
def test_chosen_splits_are_at_least_one_and_leave_each_range_work(gpu_of, M, N, K, groups):
    splits = _tiled.choose_splits(M, N, K, groups)
    assert 1 <= splits and (splits == 1 or K // splits >= _tiled.MIN_K_PER_SPLIT)
