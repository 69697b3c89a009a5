"""pytest-benchmark suite: refnet and its peer side by side at a few representative AlexNet shapes.

Run with `pytest bench/` (not part of `make test`, which runs tests/ only). Each group holds the
refnet kernel and its peer (numpy's matmul for GEMM, PyTorch CPU otherwise) at one shape; the
peer is skipped when torch is not installed. Each refnet result is checked against the peer before
it is timed. REFNET_BENCH_BATCH sets the batch (default 8, small enough for a 2-core machine).
`refnet bench` is the full sweep over every layer.
"""

import os

import pytest

from . import cases
from .backends import CpuBackend
from .peers import load_torch
from .shapes import alexnet_shapes

BATCH = int(os.environ.get("REFNET_BENCH_BATCH", "8"))
REPRESENTATIVE = (
    "conv1 fwd", "conv2 fwd", "conv3 bwd-data+filter", "conv5 bwd-filter",
    "fc6 fwd", "fc6 bwd-filter", "fc7 bwd-data",
    "pool1 fwd", "pool1 bwd", "norm1 fwd", "norm1 bwd", "relu1 fwd", "relu1 bwd",
    "drop6 fwd", "drop6 bwd", "softmax-xent fwd", "softmax-xent bwd",
)


def _representative_cases():
    shapes = alexnet_shapes(BATCH)
    every = [c for build in cases.BUILDERS.values() if build is not cases.step_cases for c in build(shapes)]
    by_name = {c.name: c for c in every}
    return [by_name[name] for name in REPRESENTATIVE]


CASES = _representative_cases()


@pytest.fixture(scope="module")
def backend():
    import numba

    return CpuBackend(load_torch("cpu", numba.get_num_threads()))


@pytest.fixture(scope="module")
def prepared_cases(backend):
    """Each case prepared and checked once, shared by its refnet and peer benchmarks."""
    return {}


def _prepared(case, backend, store):
    if case.name not in store:
        prepared = case.prepare(backend)
        problem = prepared.check()
        store[case.name] = (prepared, problem)
    prepared, problem = store[case.name]
    if problem:
        pytest.fail(f"{case.name}: refnet disagrees with {prepared.checked_against}: {problem}")
    return prepared


@pytest.mark.parametrize("side", ["refnet", "peer"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op(benchmark, backend, prepared_cases, case, side):
    prepared = _prepared(case, backend, prepared_cases)
    fn = prepared.run if side == "refnet" else prepared.peer
    if fn is None:
        pytest.skip(f"no peer for {case.name} (torch not installed)")
    benchmark.group = f"{case.name} {case.shape}"
    benchmark.extra_info.update(op=case.op, side=side, peer=backend.peer_label(case.op), flops=case.flops,
                                bytes=case.nbytes)
    benchmark.pedantic(fn, args=(0,), rounds=5, warmup_rounds=1, iterations=1)
