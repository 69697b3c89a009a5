"""Timers: wall clock on the CPU, CUDA events on the GPU, the machine's copy bandwidth, JIT time.

Every timer calls `fn(i)` with the call's index i, so a case can rotate among several copies of
its inputs (the GPU cases do, so the L2 cache does not flatter anyone). Warm-up calls come first
and are not counted; the figure reported is the median of the timed calls. On the CPU refnet and
its peer take turns, each turn after a pause that lets the other side's threads go to sleep. A
case that is slow stops early once it has `min_repeat` samples and has used its time budget, so a
full run stays bounded on a small machine.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field


@dataclass
class Timing:
    median_ms: float
    samples_ms: list = field(default_factory=list)

    @property
    def spread(self) -> float:
        """(max - min) / median of the samples: a noise indicator printed with the table."""
        if len(self.samples_ms) < 2 or self.median_ms <= 0:
            return 0.0
        return (max(self.samples_ms) - min(self.samples_ms)) / self.median_ms


def time_cpu(fn, repeat: int, warmup: int = 1, budget_s: float = 20.0, min_repeat: int = 3,
             min_time_s: float = 0.25, max_repeat: int = 1000) -> Timing:
    """Median wall-clock milliseconds of `fn(i)` after `warmup` calls (see time_interleaved)."""
    return time_interleaved([fn], repeat, warmup, budget_s, min_repeat, min_time_s, max_repeat)[0]


# After a call returns, a library's worker threads keep spinning for a while before they sleep
# (OpenBLAS: 2**28 cycles, about 0.1 s here; OpenMP runtimes: up to their spin count or block
# time), holding the cores the next call needs. Measured on the dev machine: numpy's matmul
# right before each refnet GEMM call cut refnet's fc6 throughput from 136 to 77 GFLOP/s; with
# a 0.2 s pause between the two sides, 134. Each side's turn therefore starts after this pause.
SETTLE_S = 0.2
# Calls shorter than this are repeated within one turn, so short ops do not pay a pause per call.
TURN_S = 0.05


def time_interleaved(fns, repeat: int, warmup: int = 1, budget_s: float = 20.0, min_repeat: int = 3,
                     min_time_s: float = 0.25, max_repeat: int = 1000, settle_s: float = None,
                     turn_s: float = TURN_S, clock=time.perf_counter, sleep=time.sleep) -> list:
    """A Timing per function of `fns`, taking turns (A A A, B B B, A A A ...) after `warmup` rounds.

    Taking turns exposes refnet and its peer to the same moments of a machine that other
    processes share, so a burst of outside load does not land on one side only. Each turn starts
    `settle_s` after the other side's last call (SETTLE_S when there are several functions, so that
    the other library's spinning threads have gone to sleep) and times calls until it has lasted
    `turn_s`. Sampling goes on until each function has at least `repeat` calls and `min_time_s`
    of timed calls (up to `max_repeat` calls): a single scheduler hiccup costs milliseconds, so a
    microsecond op needs many samples for its median to mean anything. A slow case stops after
    `min_repeat` calls once a function has used `budget_s`. `clock` (seconds) and `sleep` are
    there for the tests, which drive this logic with a simulated clock.
    """
    if settle_s is None:
        settle_s = SETTLE_S if len(fns) > 1 else 0.0
    for i in range(warmup):
        for fn in fns:
            fn(i)
    samples = [[] for _ in fns]
    spent = [0.0 for _ in fns]
    calls = 0
    while True:
        for k, fn in enumerate(fns):
            if settle_s > 0:
                sleep(settle_s)
            turn = 0.0
            for j in range(max_repeat):
                t0 = clock()
                fn(warmup + calls + j)
                dt = clock() - t0
                samples[k].append(dt * 1e3)
                spent[k] += dt
                turn += dt
                if turn >= turn_s or len(samples[k]) >= max_repeat:
                    break
        calls = min(len(s) for s in samples)
        if calls >= min_repeat and max(spent) > budget_s:
            break
        if calls >= max_repeat or (calls >= repeat and min(spent) >= min_time_s):
            break
    return [Timing(statistics.median(s), s) for s in samples]


def time_in_turns(variants, repeat: int, stages=None, pause_s: float = 0.2):
    """Rounds of every variant in turn, for the stage-by-stage scripts (bench/conv1_parts.py,
    bench/conv2_parts.py). variants: name -> (threads, fn) or None. (threads, fn): after a pause of
    pause_s (as refnet bench: the previous call's threading runtime idle first) fn() runs on
    `threads` numba threads, or on -threads torch threads, and its wall-clock and process CPU
    seconds are recorded. None: stages(name) runs on one numba thread (its per-stage timing is the
    caller's). Returns (walls, cpus), name -> list of seconds; numba's thread count is restored."""
    import numba

    saved_threads = numba.get_num_threads()
    walls = {name: [] for name in variants}
    cpus = {name: [] for name in variants}
    try:
        for _ in range(repeat):
            for name, variant in variants.items():
                if variant is None:
                    numba.set_num_threads(1)
                    stages(name)
                    continue
                threads, run = variant
                time.sleep(pause_s)
                if threads > 0:
                    numba.set_num_threads(threads)
                else:
                    import torch

                    torch.set_num_threads(-threads)
                w0, c0 = time.perf_counter(), time.process_time()
                run()
                walls[name].append(time.perf_counter() - w0)
                cpus[name].append(time.process_time() - c0)
    finally:
        numba.set_num_threads(saved_threads)
    return walls, cpus


def time_events(fn, repeat: int, make_event, elapsed_ms, warmup: int = 2, budget_s: float = 10.0,
                min_repeat: int = 5) -> Timing:
    """Median milliseconds of `fn(i)` between two GPU events around each call.

    make_event() returns an event with `.record()` and `.synchronize()`; elapsed_ms(start, end)
    reads the time between two recorded events. Used with numba.cuda events for refnet and
    torch.cuda.Event for the peer, so each side is timed on its own stream by its own clock.
    """
    for i in range(warmup):
        fn(i)
    events = []
    wall0 = time.perf_counter()
    for i in range(repeat):
        start, end = make_event(), make_event()
        start.record()
        fn(warmup + i)
        end.record()
        events.append((start, end))
        if len(events) >= min_repeat and time.perf_counter() - wall0 > budget_s:
            break
    events[-1][1].synchronize()
    samples = [elapsed_ms(s, e) for s, e in events]
    return Timing(statistics.median(samples), samples)


def copy_bandwidth_gbs(nbytes: int = 256 << 20, repeat: int = 7) -> float:
    """GB/s of numpy copying a large float32 array (bytes read + bytes written, per second).

    This is the yardstick for memory-bound ops: an op that reads and writes B bytes in total
    cannot beat B / bandwidth by much. numpy's copy runs on one thread.
    """
    import numpy as np

    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    timing = time_cpu(lambda i: np.copyto(dst, src), repeat=repeat, warmup=2)
    return 2 * src.nbytes / (timing.median_ms * 1e-3) / 1e9


_FIRST_STEP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import refnet
from bench.cases import refnet_training_step
batch, input_size = int(sys.argv[1]), int(sys.argv[2])
net = refnet.AlexNet(variant="seed", input_size=input_size, device="cpu", seed=0)
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
labels = rng.integers(0, 1000, batch).astype(np.int32)
step = refnet_training_step(net)
t1 = time.perf_counter()
step(x, labels)
t2 = time.perf_counter()
step(x, labels)
t3 = time.perf_counter()
print(json.dumps({"to_first_step_end_s": t2 - t0, "first_step_s": t2 - t1, "second_step_s": t3 - t2}))
"""


def first_training_step_seconds(cache_dir: str, batch: int = 2, input_size: int = 227, timeout_s: float = 1800):
    """Run a fresh Python process that builds AlexNet and takes two training steps; return its timings.

    NUMBA_CACHE_DIR points Numba's on-disk cache at `cache_dir`: an empty folder gives a cold
    start (every kernel compiles), a folder a previous run filled gives a warm one. The figure that
    matters to a user is `to_first_step_end_s`: process start to the end of the first step.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBA_DEBUG_CACHE="1")
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _FIRST_STEP_SCRIPT, str(batch), str(input_size)],
                          env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"first-step subprocess failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    # NUMBA_DEBUG_CACHE logs every cache hit and store: a warm run that stores anything compiled
    # (a kernel's source changed, or a function is not cacheable) and its time is not a warm time.
    log = proc.stdout + proc.stderr
    result["functions_loaded_from_cache"] = log.count("data loaded from")
    result["functions_compiled_and_saved"] = log.count("data saved to")
    return result


def jit_cold_and_warm(batch: int = 2, input_size: int = 227):
    """First training step from an empty Numba cache, then again with the cache that run filled."""
    with tempfile.TemporaryDirectory(prefix="refnet-jit-") as cache_dir:
        cold = first_training_step_seconds(cache_dir, batch, input_size)
        warm = first_training_step_seconds(cache_dir, batch, input_size)
    return {"batch": batch, "input_size": input_size, "cold": cold, "warm": warm}
