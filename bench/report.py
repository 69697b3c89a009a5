"""The benchmark's results: one Row per case, the targets they are judged by, and three outputs
(a text table, JSON, and a PNG bar chart of the ratios).

Convention, stated in every output: ratio = peer ms / refnet ms, so > 1 means refnet is faster.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

RATIO_CONVENTION = "ratio = peer ms / refnet ms (> 1: refnet faster)"


@dataclass
class Row:
    op: str
    name: str
    shape: str
    ms: Optional[float] = None
    rate: Optional[float] = None          # GFLOP/s or TFLOP/s, GB/s, or images/s
    rate_unit: str = ""
    peer: str = "n/a"
    peer_ms: Optional[float] = None
    stream_ms: Optional[float] = None     # memory-bound ops: their bytes once at the copy bandwidth
    status: str = "ok"                    # ok, unchecked: ..., MISMATCH: ..., ERROR: ...
    samples_ms: list = field(default_factory=list)
    peer_samples_ms: list = field(default_factory=list)
    images: int = 0

    @property
    def ratio(self) -> Optional[float]:
        if self.ms and self.peer_ms:
            return self.peer_ms / self.ms
        return None

    @property
    def ratio_of_minima(self) -> Optional[float]:
        """peer's fastest call / refnet's fastest: less sensitive than the medians to other
        processes on a shared machine."""
        if self.samples_ms and self.peer_samples_ms:
            return min(self.peer_samples_ms) / min(self.samples_ms)
        return None

    @property
    def x_stream(self) -> Optional[float]:
        if self.ms and self.stream_ms:
            return self.ms / self.stream_ms
        return None

    @property
    def images_per_s(self) -> Optional[float]:
        return self.images / (self.ms * 1e-3) if self.images and self.ms else None

    @property
    def peer_images_per_s(self) -> Optional[float]:
        return self.images / (self.peer_ms * 1e-3) if self.images and self.peer_ms else None


def _fmt(value, spec, missing="n/a"):
    return missing if value is None else format(value, spec)


def _rate_text(row: Row) -> str:
    if row.rate is None:
        return "n/a"
    text = f"{row.rate:.3g} {row.rate_unit}"
    if row.images_per_s is not None:
        text = f"{row.images_per_s:.1f} img/s, " + text
    return text


def format_table(rows, bandwidth_gbs: Optional[float] = None) -> str:
    """A plain-text table for the terminal (also valid Markdown)."""
    header = ["op", "shape", "ms", "rate", "x stream", "peer", "peer ms", "ratio", "ratio (min)", "check"]
    lines = [header]
    for r in rows:
        lines.append([r.name, r.shape, _fmt(r.ms, ".3f"), _rate_text(r), _fmt(r.x_stream, ".2f", ""),
                      r.peer, _fmt(r.peer_ms, ".3f"), _fmt(r.ratio, ".2f"), _fmt(r.ratio_of_minima, ".2f"),
                      r.status])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [RATIO_CONVENTION + "; ms and ratio use the median of the timed calls after warm-up,"
             " ratio (min) the fastest call of each side. GFLOP/s counts the multiply-adds of the direct"
             " convolution (on the CPU refnet computes conv2-conv5 by Winograd's algorithm, with fewer)."]
    if bandwidth_gbs:
        notes.append(f"x stream = ms / (bytes read + written once at the measured copy bandwidth "
                     f"{bandwidth_gbs:.1f} GB/s); the targets: "
                     + ", ".join(f"{op} <= {limit:g}" for op, limit in MAX_X_STREAM.items()) + ".")
    return "\n".join(notes + [""] + out)


def _rows_named(rows, op, suffix=None):
    return [r for r in rows if r.op == op and r.ms and (suffix is None or r.name.endswith(suffix))]


def _target(name, value_text, met, detail=""):
    return {"target": name, "measured": value_text, "met": met, "detail": detail}


# Issue 16's thresholds: ratio = peer ms / refnet ms (> 1: refnet faster); x stream = ms over the
# time to stream the op's bytes once.
CONV_MIN_RATIO = 1.0
GEMM_MIN_RATIO = 1.0
FORWARD_MIN_RATIO = 1.2
STEP_MIN_RATIO = 1.3
MAX_X_STREAM = {"maxpool": 1.5, "lrn": 1.5, "relu": 2.0, "dropout": 2.0}


def _every_row_at_least(out, name, rows, minimum):
    """One target over rows that must each reach `minimum`: met when the worst does."""
    rows = [r for r in rows if r.ratio]
    if not rows:
        out.append(_target(name, "not measured", None))
        return
    worst = min(rows, key=lambda r: r.ratio)
    short = [r for r in rows if r.ratio < minimum]
    detail = ", ".join(f"{r.name} {r.ratio:.2f}" for r in rows)
    if short:
        detail = f"{len(short)} of {len(rows)} below: " + detail
    out.append(_target(name, f"worst {worst.ratio:.2f} ({worst.name})", worst.ratio >= minimum, detail))


def cpu_targets(rows, jit=None, peak_gflops=None, input_size=227):
    """Issue 16's targets (issue 6's for ReLU, dropout and the JIT), judged from the rows of one run."""
    out = []
    _every_row_at_least(out, f"every FC GEMM >= {GEMM_MIN_RATIO:.1f}x numpy matmul", _rows_named(rows, "gemm"),
                        GEMM_MIN_RATIO)
    _every_row_at_least(out, f"every conv1-5 row (fwd, bwd-filter, bwd-data+filter) >= {CONV_MIN_RATIO:.1f}x "
                             f"PyTorch CPU at input {input_size}", _rows_named(rows, "conv"), CONV_MIN_RATIO)
    convs = [r for r in _rows_named(rows, "conv") if r.peer_ms and
             (r.name.endswith(" fwd") or r.name.endswith("bwd-data+filter"))]
    if convs:
        ours, theirs = sum(r.ms for r in convs), sum(r.peer_ms for r in convs)
        out.append(_target("(for reference, not a target) conv1-5 fwd + bwd-data + bwd-filter total time",
                           f"refnet {ours:.0f} ms vs torch {theirs:.0f} ms: ratio {theirs / ours:.2f}", None))

    for op, limit in MAX_X_STREAM.items():
        measured = [r for r in _rows_named(rows, op) if r.x_stream]
        if not measured:
            out.append(_target(f"{op} within {limit:g}x of streaming its bytes once", "not measured", None))
            continue
        worst = max(measured, key=lambda r: r.x_stream)
        out.append(_target(f"{op} within {limit:g}x of streaming its bytes once",
                           f"worst {worst.x_stream:.2f}x ({worst.name})", worst.x_stream <= limit,
                           ", ".join(f"{r.name} {r.x_stream:.2f}x" for r in measured)))

    for name, label, minimum in (("forward", "forward only", FORWARD_MIN_RATIO),
                                 ("train step", "training step", STEP_MIN_RATIO)):
        title = f"{label} images/s >= {minimum:.1f}x PyTorch CPU at input {input_size}"
        steps = [r for r in _rows_named(rows, "step") if r.name == name]
        if not steps or steps[0].ratio is None:
            out.append(_target(title, "not measured", None))
            continue
        r = steps[0]
        share = ""
        if peak_gflops and r.rate:
            peer_rate = r.rate / r.ratio
            share = (f"; refnet {r.rate:.1f} GFLOP/s = {100 * r.rate / peak_gflops:.0f}% of the stated peak "
                     f"{peak_gflops:.0f} GFLOP/s, torch {peer_rate:.1f} GFLOP/s = {100 * peer_rate / peak_gflops:.0f}% "
                     f"(direct-convolution FLOPs per image: refnet's Winograd layers do fewer multiply-adds, "
                     f"so its figure can pass the peak)")
        out.append(_target(title, f"refnet {r.images_per_s:.2f} img/s vs torch {r.peer_images_per_s:.2f} img/s: "
                                  f"ratio {r.ratio:.2f}", r.ratio >= minimum, share.lstrip("; ")))

    if jit:
        warm = jit["warm"]["to_first_step_end_s"]
        cold = jit["cold"]["to_first_step_end_s"]
        recompiled = jit["warm"].get("functions_compiled_and_saved", 0)
        detail = f"process start to the end of the first step, batch {jit['batch']}, input {jit['input_size']}"
        if recompiled:
            detail += (f"; the warm run still compiled {recompiled} functions (sources changed between the runs,"
                       " or functions that cannot be cached)")
        out.append(_target("first training step after a start < 60 s with the Numba cache warm",
                           f"warm {warm:.1f} s, cold {cold:.1f} s", warm < 60.0, detail))
    else:
        out.append(_target("first training step < 60 s with a warm cache", "not measured", None))
    return out


def cuda_targets(rows):
    """Issue 4's targets on an H200 (fp32)."""
    out = []
    for layer in sorted({r.name.split()[0] for r in _rows_named(rows, "conv")}):
        pair = [r for r in _rows_named(rows, "conv") if r.name.split()[0] == layer and r.peer_ms and
                (r.name.endswith(" fwd") or r.name.endswith("bwd-data+filter"))]
        if len(pair) == 2:
            ratio = sum(r.peer_ms for r in pair) / sum(r.ms for r in pair)
            out.append(_target(f"{layer} fwd+bwd >= 0.5x cuDNN", f"{ratio:.2f}", ratio >= 0.5))
    gemms = [r for r in _rows_named(rows, "gemm") if r.ratio]
    if gemms:
        worst = min(gemms, key=lambda r: r.ratio)
        out.append(_target("GEMM >= 0.5x cuBLAS", f"worst {worst.ratio:.2f} ({worst.name})", worst.ratio >= 0.5,
                           ", ".join(f"{r.name} {r.ratio:.2f}" for r in gemms)))
    steps = [r for r in _rows_named(rows, "step") if r.name == "train step"]
    if steps:
        r = steps[0]
        out.append(_target("training step >= 3,000 images/s (batch 128)", f"{r.images_per_s:.0f} img/s",
                           r.images_per_s >= 3000 and r.images == 128,
                           f"batch {r.images}; peer {_fmt(r.peer_images_per_s, '.0f')} img/s"))
    return out


def format_targets(targets) -> str:
    lines = []
    for t in targets:
        verdict = {True: "MET", False: "NOT MET", None: "not judged" if t["measured"] != "not measured"
                   else "not measured"}[t["met"]]
        lines.append(f"- [{verdict}] {t['target']}: {t['measured']}")
        if t["detail"]:
            lines.append(f"    {t['detail']}")
    return "\n".join(lines)


def format_parameters(parameters) -> str:
    """The (name, value, why) rows of machine.parameters_table() as a Markdown table."""
    lines = ["| parameter | value | from |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {why} |" for name, value, why in parameters]
    return "\n".join(lines)


def format_report(meta, rows, targets) -> str:
    """The whole result as Markdown: the run's settings, the table, JIT times, the targets."""
    lines = [
        f"refnet bench on {meta['machine']} ({meta['device']}, {meta['cpu_count']} CPUs seen), {meta['started_utc']} UTC",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"- batch {meta['batch']} (FC GEMMs: {meta['gemm_batch']}), input {meta['input_size']}, "
        f"at least {meta['repeat']} timed calls per case; refnet and its peer take turns, each turn "
        f"{meta.get('settle_s', 0):g} s after the other side's last call",
        f"- threads: refnet (numba, {meta['numba_threading_layer']} layer) {meta['numba_threads']}, "
        f"torch {meta['torch_threads'] if meta['torch'] else 'n/a'}",
        f"- peers: torch {meta['torch'] or 'not installed'}; numpy BLAS {meta['numpy_blas']}",
    ]
    if meta.get("copy_bandwidth_gbs"):
        start, end = meta["copy_bandwidth_gbs_start_end"]
        lines.append(f"- copy bandwidth (numpy copy of a large array, bytes read + written per second): "
                     f"{meta['copy_bandwidth_gbs']:.1f} GB/s, the higher of {start:.1f} (before the cases) "
                     f"and {end:.1f} (after)")
    lines.append(f"- load average (1, 5, 15 min): start {_load(meta['load_average_start'])}, "
                 f"end {_load(meta['load_average_end'])}")
    if meta.get("git"):
        lines.append(f"- code: {meta['git']}")
    if meta.get("note"):
        lines.append(f"- note: {meta['note']}")
    if meta.get("cpu_parameters"):
        lines += ["", "What the CPU reports and the blocking the kernels chose from it (refnet/kernels/cpu/machine.py):",
                  "", format_parameters(meta["cpu_parameters"])]
    lines += ["", format_table(rows, meta.get("copy_bandwidth_gbs"))]
    jit = meta.get("jit")
    if jit:
        lines += ["", f"JIT: first training step (batch {jit['batch']}, input {jit['input_size']}) in a fresh process, "
                      f"from process start to the end of the step: cold Numba cache "
                      f"{jit['cold']['to_first_step_end_s']:.1f} s, warm cache {jit['warm']['to_first_step_end_s']:.1f} s "
                      f"(the step itself: {jit['cold']['first_step_s']:.1f} s cold, {jit['warm']['first_step_s']:.1f} s warm; "
                      f"second step {jit['warm']['second_step_s']:.2f} s). Numba functions loaded from the cache / "
                      f"compiled: cold {_cache_counts(jit['cold'])}, warm {_cache_counts(jit['warm'])}"]
    lines += ["", "Targets:", "", format_targets(targets)]
    return "\n".join(lines)


def _cache_counts(run):
    return f"{run.get('functions_loaded_from_cache', '?')} / {run.get('functions_compiled_and_saved', '?')}"


def _load(values):
    return ", ".join(f"{v:.1f}" for v in values)


def write_json(path, meta, rows, targets):
    records = []
    for r in rows:
        record = asdict(r)
        record.update(ratio=r.ratio, ratio_of_minima=r.ratio_of_minima, x_stream=r.x_stream, images_per_s=r.images_per_s,
                      peer_images_per_s=r.peer_images_per_s)
        records.append(record)
    with open(path, "w") as f:
        json.dump({"meta": meta, "convention": RATIO_CONVENTION, "rows": records, "targets": targets}, f, indent=2)


def write_png(path, rows, title):
    """Horizontal bars of the ratio per case on a log axis, a line at 1 (parity with the peer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = [r for r in rows if r.ratio]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * max(len(shown), 1)))
    if not shown:
        ax.text(0.5, 0.5, "no case had a peer to compare with", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ops = sorted({r.op for r in shown}, key=[r.op for r in shown].index)
        colours = {op: plt.get_cmap("tab10")(i % 10) for i, op in enumerate(ops)}
        y = range(len(shown))
        ax.barh(y, [r.ratio for r in shown], color=[colours[r.op] for r in shown])
        ax.set_yticks(list(y), [f"{r.name} (vs {r.peer})" for r in shown], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        lo, hi = min(r.ratio for r in shown), max(r.ratio for r in shown)
        ticks = [t for t in (0.01, 0.03, 0.1, 0.25, 0.5, 1, 2, 4, 10, 30, 100, 300) if lo / 3 <= t <= hi * 3]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xlabel(RATIO_CONVENTION)
        for i, r in enumerate(shown):
            ax.text(r.ratio, i, f" {r.ratio:.2f}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
