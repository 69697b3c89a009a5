"""One row per pass: what its kernels' machine code says about the speed it can reach.

Matrix passes ("matmul"): the main launch is the one whose kernel has a K-tile loop (see counts);
a pass's instructions per K tile are those of one K tile of that loop, plus, spread evenly over
all the K tiles the main launch runs, everything else the pass issues:

    per K tile = K tile of the loop
               + (instructions outside the loop, once per thread) / (K tiles per thread)
               + (each other launch's threads x its instructions per thread) / (main threads x K tiles per thread)

where another launch (a split-K reduction, a pre-pass) runs each of its loops
ceil(largest array argument / threads launched) times: a grid-stride loop's trip count, and the
split count of the split-K reduction. The FFMA share is FFMAs / all of it; an issue-bound kernel
runs at most at that share of the fp32 peak (every issue slot an FFMA = the peak). `fill` is the
useful multiply-adds over those issued (tiles hanging over the matrix edge multiply zeros).

Memory passes: bytes moved (each array argument read or written once, twice when read and
written: passes.bytes_moved) over the DRAM bandwidth; per element of the largest array the pass
touches (the input of a max-pool, the parameters of the SGD update).
"""

import math
from dataclasses import asdict, dataclass, field

from . import counts
from .capture import compile_kernel
from .occupancy import occupancy
from .passes import TileGeometry, bytes_moved

# name -> (fp32 FLOP/s without tensor cores, DRAM bytes/s)
GPUS = {"H100 SXM": (67e12, 3.35e12), "H200": (67e12, 4.8e12)}


@dataclass
class Row:
    name: str
    variant: str
    kind: str
    shape: str
    in_step: bool
    kernels: list
    registers: int
    shared_bytes: int
    threads: int
    blocks_per_sm: int
    warps_per_sm: int
    limited_by: str
    stack_bytes: int
    spill_bytes: int
    local_instructions: int
    local_in_loop: int
    div64_calls: int
    calls: dict  # subroutine -> CALL instructions, over the pass's kernels
    flops: int = 0
    # matmul passes
    per_k_tile: dict = field(default_factory=dict)  # class -> instructions per thread per K tile (whole pass)
    loop_per_k_tile: dict = field(default_factory=dict)  # the same, the K-tile loop alone
    nested_trips: float = 0.0
    k_tiles_per_thread: float = 0.0
    ffma_share: float = 0.0  # of the whole pass
    loop_ffma_share: float = 0.0  # of the K-tile loop alone
    fill: float = 0.0
    ceiling_tflops: dict = field(default_factory=dict)  # GPU -> fp32 peak x ffma_share
    # memory passes
    bytes: int = 0
    elements: int = 0
    dram_us: dict = field(default_factory=dict)  # GPU -> microseconds at full DRAM bandwidth

    @property
    def bytes_per_element(self):
        return self.bytes / self.elements if self.elements else 0.0

    def model_seconds(self, gpu):
        """The pass's modelled time on `gpu`: issue-bound for matmul, DRAM-bound otherwise."""
        peak, bandwidth = GPUS[gpu]
        if self.kind == "matmul":
            rate = peak * self.ffma_share * self.fill
            return self.flops / rate if rate else math.inf
        return self.bytes / bandwidth

    def to_json(self):
        d = asdict(self)
        d["bytes_per_element"] = self.bytes_per_element
        return d


def _main_launch(kernels, launches, kind):
    if kind == "matmul":
        with_tile = [i for i, k in enumerate(kernels) if counts.k_tile_loop(k.listing) is not None]
        if with_tile:
            return with_tile[0]
        raise ValueError(f"no K-tile loop (a loop issuing FFMAs) in {[k.name for k in kernels]}")
    return max(range(len(launches)), key=lambda i: bytes_moved(launches[i]))


def _add(total, part, weight):
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v * weight
    return total


def _grid_stride_trips(launch):
    threads = launch.blocks * launch.threads_per_block
    return max(1, math.ceil(max(a.size for a in launch.arrays()) / threads))


def analyse(pass_, toolchain, arch="sm_90", geometry=None):
    """The Row of one passes.Pass."""
    cc = (int(arch[3:-1]), int(arch[-1]))
    kernels = [compile_kernel(launch, toolchain, cc) for launch in pass_.launches]
    main = _main_launch(kernels, pass_.launches, pass_.kind)
    kernel, launch = kernels[main], pass_.launches[main]
    occ = occupancy(kernel.registers, kernel.shared_bytes, launch.threads_per_block)
    distinct = {id(k): k for k in kernels}.values()
    all_calls = {}
    for k in distinct:
        _add(all_calls, counts.calls(k.listing), 1)
    local = [counts.local_memory(k.listing) for k in distinct]
    row = Row(
        name=pass_.name, variant=pass_.variant, kind=pass_.kind, shape=pass_.shape, in_step=pass_.in_step,
        kernels=[k.name for k in kernels], registers=kernel.registers, shared_bytes=kernel.shared_bytes,
        threads=launch.threads_per_block, blocks_per_sm=occ.blocks, warps_per_sm=occ.warps, limited_by=occ.limited_by,
        stack_bytes=max(k.stack_bytes for k in distinct), spill_bytes=max(k.spill_bytes for k in distinct),
        local_instructions=sum(x.instructions for x in local), local_in_loop=sum(x.in_loop for x in local),
        div64_calls=sum(counts.div64_calls(k.listing) for k in distinct), calls={k: int(v) for k, v in all_calls.items()},
        flops=pass_.flops,
    )  # fmt: skip
    if pass_.kind == "matmul":
        _matmul_counts(row, kernels, pass_.launches, main, geometry or TileGeometry.current())
    else:
        row.bytes = sum(bytes_moved(x) for x in pass_.launches)
        row.elements = max(a.size for x in pass_.launches for a in x.arrays())
        row.dram_us = {gpu: row.bytes / bandwidth * 1e6 for gpu, (_, bandwidth) in GPUS.items()}
    return row


def _matmul_counts(row, kernels, launches, main, geometry):
    kernel, launch = kernels[main], launches[main]
    tile = counts.k_tile(kernel.listing, geometry.ffma_per_thread)
    tiles = geometry.k_tiles_per_block(launch)
    main_threads = launch.blocks * launch.threads_per_block
    per_tile = dict(tile.counts)
    _add(per_tile, counts.outside(kernel.listing, tile.loop), 1 / tiles)
    for i, (other, other_launch) in enumerate(zip(kernels, launches)):
        if i != main:
            threads = other_launch.blocks * other_launch.threads_per_block
            issued = counts.per_thread(other.listing, _grid_stride_trips(other_launch))
            _add(per_tile, issued, threads / (main_threads * tiles))
    total = sum(per_tile.values())
    row.per_k_tile = per_tile
    row.loop_per_k_tile = tile.counts
    row.nested_trips = tile.trips
    row.k_tiles_per_thread = tiles
    row.ffma_share = per_tile["FFMA"] / total
    row.loop_ffma_share = tile.ffma_share
    issued_macs = main_threads * tiles * geometry.ffma_per_thread
    row.fill = (row.flops / 2) / issued_macs
    row.ceiling_tflops = {gpu: peak * row.ffma_share / 1e12 for gpu, (peak, _) in GPUS.items()}


def analyse_all(passes, toolchain, arch="sm_90", progress=None):
    rows = []
    for p in passes:
        rows.append(analyse(p, toolchain, arch))
        if progress:
            progress(p)
    return rows
