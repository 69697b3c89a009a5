"""Compile every CUDA kernel at AlexNet's shapes and read its machine code (SASS), with no GPU.

    refnet sass [--arch sm_90] [--batch 128] [--json PATH] [--md PATH]

Each pass of a training step (conv1-conv5 forward, backward data and filter, the seed variant and
the paper's groups=2 layers; fc6-fc8; max-pool, LRN, ReLU, dropout, the loss, the finite check,
SGD) is run with its kernel launches replaced by compilations: Numba -> PTX -> ptxas -O3 -> cubin
-> nvdisasm. The table gives, per pass, registers, shared memory, resident blocks and warps per SM,
local-memory instructions, calls of 64-bit division routines, and for matrix passes the
instructions one K tile issues by class, the FFMA share and the issue-bound ceiling in TFLOP/s;
for memory-bound passes the bytes moved and the DRAM-bound time. Then a model of the step's time
(a ceiling, not a measurement). ptxas and nvdisasm come from NVIDIA's pip wheels
(`pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm`) or a system CUDA toolkit.
"""

READING = """How to read it: counts are per thread (= per warp instruction) over one K tile, the unit of
work between two shared-memory hand-offs of the main loop: its body once, loops nested in it times
their trip count (solved from the FFMAs a thread owes per tile), a CALL counted with the length of
the subroutine it calls; the pass's other instructions (prologue, epilogue, split-K reduction,
helper kernels) are spread evenly over its K tiles. "FFMA share loop/pass": FFMAs over all
instructions of the main loop alone / of the whole pass. An issue-bound kernel reaches at most that
share of the fp32 peak (the ceiling); "fill" is the share of issued multiply-adds that are useful
(tiles over a matrix's edge, taps of a strided data gradient that hit no output). LDL+STL:
local-memory instructions in the kernels, in brackets those inside a loop. div64 calls: CALLs of
__cuda_sm20_div/rem_s64/u64 (about 80 instructions each). blocks/warps per SM: resident at once
under the sm_90 limits (65,536 registers, 228 KB shared memory, 64 warps, 32 blocks)."""


def add_arguments(parser):
    parser.add_argument("--arch", default="sm_90", choices=("sm_90",),
                        help="GPU architecture to compile for and whose limits apply (default: sm_90)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=128, metavar="N", help="batch size of the shapes (default: 128)")
    parser.add_argument("--json", metavar="PATH", help="also write every row, the step model and the toolchain as JSON")
    parser.add_argument("--md", metavar="PATH", help="also write the tables and the step model as markdown")


def run(args) -> int:
    import os
    import platform
    import sys
    import time

    from tqdm import tqdm

    if args.batch < 1:
        print(f"refnet sass: --batch: expected a positive batch size, got {args.batch}", file=sys.stderr)
        return 2
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("refnet sass: NUMBA_ENABLE_CUDASIM=1: the CUDA simulator cannot compile kernels; unset it", file=sys.stderr)
        return 2
    from ..sass import analysis, passes, report
    from ..sass.toolchain import ToolchainNotFound, find_toolchain

    try:
        toolchain = find_toolchain()
    except ToolchainNotFound as exc:
        print(f"refnet sass: {exc}", file=sys.stderr)
        return 2
    started = time.time()
    all_passes = passes.alexnet_passes(args.batch) + passes.alexnet_passes(args.batch, "paper", only_grouped=True)
    with tqdm(total=len(all_passes), desc="compiling and reading SASS", unit="pass", file=sys.stderr) as bar:
        rows = analysis.analyse_all(all_passes, toolchain, args.arch, progress=lambda p: bar.update())
    seconds = time.time() - started
    command = "refnet sass " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] == "sass" else "refnet sass"
    print(report.format_text(rows, args.batch, args.arch))
    print(f"\n{toolchain.describe()}; {len(rows)} passes compiled and read in {seconds:.0f} s")
    if args.md:
        header = "\n".join([
            f"Command: `{command}`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"Toolchain: {toolchain.describe()}; host {platform.machine()} {platform.python_implementation()} "
            f"{platform.python_version()}; no GPU involved.", "", READING])  # fmt: skip
        with open(args.md, "w") as f:
            f.write(report.format_markdown(rows, args.batch, args.arch, header))
    if args.json:
        with open(args.json, "w") as f:
            f.write(report.to_json(rows, args.batch, args.arch, toolchain, command))
    return 0
