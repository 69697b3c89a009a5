"""Benchmark every refnet op at AlexNet's layer shapes, and a training step, against peer libraries.

`refnet bench --device cpu` times refnet's @njit kernels next to numpy's matmul (GEMM) and
PyTorch CPU (everything else, when torch is installed); `--device cuda` times the @cuda.jit
kernels next to cuBLAS and cuDNN through PyTorch, with CUDA events. Each refnet result is checked
against the peer's before it is timed: a mismatch is reported and not timed. Output: a table on
stdout (ratio = peer ms / refnet ms, > 1 means refnet is faster), JSON, and a PNG bar chart.
"""

import argparse
import os
import sys

OP_GROUPS = ("conv", "gemm", "maxpool", "lrn", "relu", "dropout", "softmax", "sgd", "step", "jit")
ALIASES = {"pool": "maxpool", "fc": "gemm", "xent": "softmax", "train": "step"}
DEFAULT_PEAK = {"cpu": 150.0, "cuda": 67.0}  # fp32 GFLOP/s of the 2-core dev machine; TFLOP/s of an H200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of every case (default: 32 on the CPU, 128 on CUDA)")
    parser.add_argument("--gemm-batch", type=int, default=None,
                        help="batch size of the FC-layer GEMMs (default: --batch); issue 6 judges them at 128")
    parser.add_argument("--input-size", type=int, default=227, help="image size (default 227, the paper's)")
    parser.add_argument("--ops", default="all",
                        help=f"comma-separated groups out of {','.join(OP_GROUPS)} (default all; jit is CPU only)")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per case (default 5 CPU, 20 CUDA)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for refnet (numba) and torch alike (default: numba's default)")
    parser.add_argument("--json", default=None, help="JSON output (default refnet-bench-DEVICE.json)")
    parser.add_argument("--png", default=None, help="bar chart of the ratios (default refnet-bench-DEVICE.png)")
    parser.add_argument("--md", default=None, help="also write the table and targets as Markdown here")
    parser.add_argument("--peak", type=float, default=None,
                        help="fp32 peak for the share-of-peak figure: GFLOP/s on CPU (default 150), TFLOP/s on CUDA (67)")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. the machine's load)")
    parser.add_argument("--mpi", action="store_true",
                        help="instead: allreduce time per step for the 62M-parameter gradient over --ranks MPI "
                             "processes, against MPI's own point-to-point bandwidth at that message size")
    parser.add_argument("--ranks", type=int, default=2, help="MPI processes for --mpi (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, 2 repeats, small bandwidth probe, no JIT timing unless asked")


def _selected_groups(text: str, device: str, quick: bool):
    if text == "all":
        groups = [g for g in OP_GROUPS if not (g == "jit" and (device != "cpu" or quick))]
        return groups
    groups = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        token = ALIASES.get(token, token)
        if token not in OP_GROUPS:
            raise ValueError(f"--ops: unknown group {token!r}; expected some of {','.join(OP_GROUPS)}")
        groups.append(token)
    return groups


def _cuda_unavailable_reason():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 is set: the CUDA simulator cannot be benchmarked"
    from numba import cuda

    if not cuda.is_available():
        return "no CUDA GPU is available here (numba.cuda.is_available() is False)"
    return None


def _git_state() -> str:
    """The commit measured, and whether the working tree differed from it (None outside git)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "refnet"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not head:
        return None
    return f"git {head}" + (" with uncommitted changes under refnet/" if dirty else "")


def run(args) -> int:
    import gc
    import time

    import numba
    from tqdm import tqdm

    from . import backends, cases, peers, report
    from .shapes import alexnet_shapes
    from .timing import SETTLE_S

    if args.mpi:
        from .mpi_allreduce import run_launched

        return run_launched(args.ranks, repeat=args.repeat or 10, json_path=args.json, quick=args.quick)
    device = args.device
    try:
        groups = _selected_groups(args.ops, device, args.quick)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if device == "cuda":
        reason = _cuda_unavailable_reason()
        if reason:
            print(f"refnet bench --device cuda: {reason}. Run it on a machine with an NVIDIA GPU "
                  f"(bench/gpu_check.sh), or use --device cpu.", file=sys.stderr)
            return 2
    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    torch = peers.load_torch(device, threads)
    if device == "cuda" and torch is not None and not torch.cuda.is_available():
        print("torch is installed without CUDA support: the peer columns will say n/a", file=sys.stderr)
        torch = None

    batch = args.batch or (1 if args.quick else (32 if device == "cpu" else 128))
    gemm_batch = args.gemm_batch or batch
    repeat = args.repeat or (2 if args.quick else (5 if device == "cpu" else 20))
    if device == "cpu":
        be = backends.CpuBackend(torch, warmup=1, bandwidth_bytes=(32 << 20) if args.quick else (256 << 20),
                                 min_time_s=0.02 if args.quick else 0.25, settle_s=0.0 if args.quick else SETTLE_S)
    else:
        be = backends.CudaBackend(torch)
    peak = args.peak or DEFAULT_PEAK[device]

    shapes = alexnet_shapes(batch, args.input_size)
    gemm_shapes = alexnet_shapes(gemm_batch, args.input_size)
    selected = []
    for group in groups:
        if group != "jit":
            selected += cases.BUILDERS[group](gemm_shapes if group == "gemm" else shapes)

    meta = {
        "command": "refnet bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else " ".join(sys.argv),
        "device": device,
        "batch": batch,
        "gemm_batch": gemm_batch,
        "input_size": args.input_size,
        "repeat": repeat,
        "settle_s": be.settle_s if device == "cpu" else 0.0,
        "numba_threads": threads,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "numpy_blas": peers.numpy_blas_info(),
        "machine": peers.cpu_model() if device == "cpu" else be.device_name,
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "git": _git_state(),
        "note": args.note,
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if device == "cpu":
        from refnet.kernels.cpu import machine

        meta["cpu_parameters"] = [list(row) for row in machine.parameters_table()]
    print(f"refnet bench on {meta['machine']} ({device}): numba {threads} threads, torch "
          f"{meta['torch'] or 'not installed'} {meta['torch_threads'] or ''} threads, numpy BLAS {meta['numpy_blas']}",
          file=sys.stderr)
    if meta.get("cpu_parameters"):
        print(report.format_parameters(meta["cpu_parameters"]), file=sys.stderr)

    memory_bound = any(c.op in cases.MEMORY_BOUND for c in selected)
    bandwidth_start = be.bandwidth_gbs() if memory_bound else None

    rows = []
    mismatches = 0
    for case in tqdm(selected, desc="bench", unit="case", file=sys.stderr):
        row = report.Row(case.op, case.name, case.shape, images=case.images)
        try:
            prepared = case.prepare(be)
            row.peer = be.peer_label(case.op) if prepared.peer else "n/a"
            problem = prepared.check()
            if problem:
                mismatches += 1
                row.status = f"MISMATCH: {problem}"
                tqdm.write(f"!!! {case.name}: refnet disagrees with {prepared.checked_against}: {problem}", file=sys.stderr)
            else:
                if prepared.checked_against != "peer":
                    row.status = f"ok (checked against {prepared.checked_against})"
                t, tp = be.time_pair(prepared.run, prepared.peer, repeat, whole_network=case.op == "step")
                row.ms, row.samples_ms = t.median_ms, t.samples_ms
                if tp is not None:
                    row.peer_ms, row.peer_samples_ms = tp.median_ms, tp.samples_ms
        except Exception as exc:  # one broken op must not hide the others' numbers
            mismatches += 1
            row.status = f"ERROR: {type(exc).__name__}: {exc}"
            tqdm.write(f"!!! {case.name}: {row.status}", file=sys.stderr)
        if row.ms:
            if case.flops:
                row.rate, row.rate_unit = case.flops / (row.ms * 1e-3) / be.rate_scale, be.rate_unit
            elif case.nbytes:
                row.rate, row.rate_unit = case.nbytes / (row.ms * 1e-3) / 1e9, "GB/s"
        rows.append(row)
        prepared = None
        gc.collect()

    if memory_bound:
        # Measured before and after the cases; the higher figure is the machine's capability (the
        # lower one met more outside load), and it is the stricter yardstick for the kernels.
        bandwidth_end = be.bandwidth_gbs()
        meta["copy_bandwidth_gbs_start_end"] = (bandwidth_start, bandwidth_end)
        meta["copy_bandwidth_gbs"] = max(bandwidth_start, bandwidth_end)
        for row, case in zip(rows, selected):
            if case.nbytes and row.ms:
                row.stream_ms = case.nbytes / (meta["copy_bandwidth_gbs"] * 1e9) * 1e3

    jit = None
    if "jit" in groups and device == "cpu":
        from .timing import jit_cold_and_warm

        print("timing the first training step in fresh processes (cold, then warm Numba cache)...", file=sys.stderr)
        try:
            jit = jit_cold_and_warm()
        except Exception as exc:
            print(f"!!! JIT timing failed: {exc}", file=sys.stderr)
            mismatches += 1
    meta["jit"] = jit
    meta["load_average_end"] = os.getloadavg()
    try:
        meta["numba_threading_layer"] = numba.threading_layer()  # known once a parallel kernel ran
    except ValueError:
        pass

    targets = report.cpu_targets(rows, jit, peak, args.input_size) if device == "cpu" else report.cuda_targets(rows)
    text = report.format_report(meta, rows, targets)
    print(text)

    json_path = args.json or f"refnet-bench-{device}.json"
    png_path = args.png or f"refnet-bench-{device}.png"
    report.write_json(json_path, meta, rows, targets)
    report.write_png(png_path, rows, f"refnet vs peers, {device}, batch {batch} ({meta['machine']})")
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
    print(f"\nwrote {json_path} and {png_path}" + (f" and {args.md}" if args.md else ""), file=sys.stderr)
    if mismatches:
        print(f"!!! {mismatches} case(s) disagreed with their peer or failed: see the check column", file=sys.stderr)
        return 1
    return 0
