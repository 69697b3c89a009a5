"""tasks.claim: a parallel loop that hands tasks to whichever thread is free runs every task exactly
once, whatever the thread count, and tasks slowed on one thread are taken up by the others."""

import time

import numba
import numpy as np
import pytest
from numba import njit, prange

from refnet.kernels.cpu.tasks import claim


@njit(parallel=True, cache=True)
def _run_tasks(runs, ran_by, tasks):
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(tasks):
        t = claim(counter)
        while t < tasks:
            runs[t] += 1
            ran_by[t] = numba.get_thread_id()
            t = claim(counter)
    # The array, not counter[0]: Numba's parfor pass takes the element for the zero it was made
    # with (claim's write is invisible to it), while the array's memory holds the count.
    return counter


@njit(cache=True)
def _claims_in_turn(counter, count):
    got = np.empty(count, dtype=np.int64)
    for i in range(count):
        got[i] = claim(counter)
    return got


def test_claim_returns_the_counter_before_adding_one():
    counter = np.array([5], dtype=np.int64)
    assert list(_claims_in_turn(counter, 4)) == [5, 6, 7, 8]
    assert counter[0] == 9


@pytest.mark.parametrize("threads", sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}))
@pytest.mark.parametrize("tasks", [1, 2, 3, 17, 1000])
def test_every_task_runs_exactly_once(threads, tasks):
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        runs = np.zeros(tasks, dtype=np.int64)
        ran_by = np.full(tasks, -1, dtype=np.int64)
        claimed = _run_tasks(runs, ran_by, tasks)[0]
    finally:
        numba.set_num_threads(saved)
    assert np.all(runs == 1)
    assert np.all((ran_by >= 0) & (ran_by < threads))
    # each of the prange's iterations ends on one claim past the end
    assert claimed == tasks + tasks


def test_claim_rejects_other_counters():
    with pytest.raises(numba.core.errors.TypingError):
        _claims_in_turn(np.zeros(1, dtype=np.int32), 1)
