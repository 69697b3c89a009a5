"""bench/timing.py's interleaved timer driven by a simulated clock: warm-up calls not counted, each
sample the call's own duration, turns that last turn_s, a settle pause before every turn, the
median, and the three stopping rules. No wall-clock time is measured or asserted."""

import statistics

import pytest

from bench.timing import SETTLE_S, time_interleaved


class SimulatedMachine:
    """A clock that moves only when a simulated op runs or the harness sleeps; a log of both."""

    def __init__(self):
        self.now = 0.0
        self.log = []  # ("sleep", seconds) or (op name, call index, seconds)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.log.append(("sleep", seconds))
        self.now += seconds

    def op(self, name, durations_s):
        """fn(i) that takes durations_s[0], durations_s[1], ... (cycling) seconds of simulated time."""
        calls = []

        def fn(i):
            seconds = durations_s[len(calls) % len(durations_s)]
            calls.append(i)
            self.log.append((name, i, seconds))
            self.now += seconds

        return fn

    def time(self, fns, **kwargs):
        return time_interleaved(fns, clock=self.clock, sleep=self.sleep, **kwargs)

    def turns(self, warmup_calls):
        """The timed calls grouped into turns: [(name, [seconds of each call])], in order."""
        turns = []
        for entry in self.log[warmup_calls:]:
            if entry[0] == "sleep":
                continue
            if not turns or turns[-1][0] != entry[0]:
                turns.append((entry[0], []))
            turns[-1][1].append(entry[2])
        return turns


def durations_of(machine, name, skip):
    return [entry[2] for entry in machine.log if entry[0] == name][skip:]


def test_samples_are_each_timed_calls_duration_and_the_median_is_theirs():
    machine = SimulatedMachine()
    fast = machine.op("fast", [0.001, 0.001, 0.001, 0.040])  # a skewed spread: median 1 ms, mean 10.75 ms
    slow = machine.op("slow", [0.020, 0.030, 0.025])
    fast_t, slow_t = machine.time([fast, slow], repeat=3, warmup=2, min_time_s=0.1, settle_s=0.5, turn_s=0.01)

    assert machine.log[:4] == [("fast", 0, 0.001), ("slow", 0, 0.020), ("fast", 1, 0.001), ("slow", 1, 0.030)]
    for timing, name in ((fast_t, "fast"), (slow_t, "slow")):
        assert timing.samples_ms == pytest.approx([1e3 * s for s in durations_of(machine, name, skip=2)])
        assert timing.median_ms == pytest.approx(statistics.median(timing.samples_ms))
    assert fast_t.median_ms == pytest.approx(1.0)


def test_turns_last_turn_s_and_each_starts_after_the_settle_pause():
    machine = SimulatedMachine()
    fast, slow = machine.op("fast", [0.003]), machine.op("slow", [0.020])
    machine.time([fast, slow], repeat=3, warmup=1, min_time_s=0.1, settle_s=0.5, turn_s=0.01)

    timed = machine.log[2:]
    turn_starts = [i for i, entry in enumerate(timed) if entry[0] != "sleep" and (i == 0 or timed[i - 1][0] == "sleep")]
    assert all(timed[i - 1] == ("sleep", 0.5) for i in turn_starts[1:]) and timed[0] == ("sleep", 0.5)
    turns = machine.turns(warmup_calls=2)
    assert [name for name, _ in turns] == ["fast", "slow"] * (len(turns) // 2) and len(turns) % 2 == 0
    for name, calls in turns:
        # a turn ends with the first call that brings it to turn_s
        assert sum(calls) >= 0.01 > sum(calls[:-1])
    assert [len(calls) for name, calls in turns if name == "fast"][0] == 4


def test_stops_at_the_first_round_with_repeat_calls_and_min_time_each():
    machine = SimulatedMachine()
    fast, slow = machine.op("fast", [0.004]), machine.op("slow", [0.020])
    fast_t, slow_t = machine.time([fast, slow], repeat=3, warmup=1, min_time_s=0.05, settle_s=0.5, turn_s=0.01)
    # fast: 3 calls (12 ms) per turn, 60 ms after 5 rounds (48 after 4); slow then has 5 calls
    assert len(fast_t.samples_ms) == 15 and len(slow_t.samples_ms) == 5

    machine = SimulatedMachine()
    fast, slow = machine.op("fast", [0.004]), machine.op("slow", [0.020])
    fast_t, slow_t = machine.time([fast, slow], repeat=7, warmup=1, min_time_s=0.05, settle_s=0.5, turn_s=0.01)
    # the time is there after 5 rounds, the 7 calls of the slower side after 7
    assert len(fast_t.samples_ms) == 21 and len(slow_t.samples_ms) == 7


def test_a_slow_case_stops_after_min_repeat_calls_once_over_budget():
    machine = SimulatedMachine()
    (timing,) = machine.time([machine.op("slow", [5.0])], repeat=100, warmup=1, budget_s=12.0, min_repeat=3)
    assert len(timing.samples_ms) == 3  # 15 s spent after the third call: over 12
    assert not [entry for entry in machine.log if entry[0] == "sleep"]  # one function: no settle pause


def test_a_microsecond_op_stops_at_max_repeat():
    machine = SimulatedMachine()
    (timing,) = machine.time([machine.op("tiny", [1e-6])], repeat=3, warmup=0, min_time_s=10.0, max_repeat=50)
    assert len(timing.samples_ms) == 50 and timing.median_ms == pytest.approx(1e-3)


def test_several_functions_settle_for_settle_s_by_default():
    machine = SimulatedMachine()
    machine.time([machine.op("a", [0.1]), machine.op("b", [0.1])], repeat=2, warmup=0, min_time_s=0.1)
    sleeps = [entry[1] for entry in machine.log if entry[0] == "sleep"]
    assert sleeps == [SETTLE_S] * 4  # two rounds of two turns
