"""The analysis rows as text tables (terminal), markdown and JSON."""

import json

from .analysis import GPUS
from .step_model import CUDNN_R4_TITAN_X_MS, format_step_models, step_model

_MATMUL = ("pass", "regs", "smem KB", "blocks/warps per SM", "LDL+STL (in loop)", "div64 calls", "FFMA",
           "LDS 32/64/128", "LDG", "INT", "BRANCH", "BAR", "CALL", "other", "total", "FFMA share loop/pass",
           "fill") + tuple(f"ceiling {gpu} TFLOP/s" for gpu in GPUS)  # fmt: skip
_MEMORY = ("pass", "shape", "kernels", "regs", "blocks/warps per SM", "LDL+STL (in loop)", "div64 calls", "MB moved",
           "bytes/element") + tuple(f"DRAM {gpu} us" for gpu in GPUS)  # fmt: skip


def _label(row):
    return row.name if row.variant == "seed" else f"{row.name} ({row.variant}, groups 2)"


def _common(row):
    return (str(row.registers), f"{row.blocks_per_sm}/{row.warps_per_sm}",
            f"{row.local_instructions} ({row.local_in_loop})", str(row.div64_calls))  # fmt: skip


def matmul_cells(row):
    c = row.per_k_tile
    regs, occupancy, local, div = _common(row)
    lds = "/".join(f"{c[k]:.0f}" for k in ("LDS.32", "LDS.64", "LDS.128"))
    return (_label(row), regs, f"{row.shared_bytes / 1024:.1f}", occupancy, local, div, f"{c['FFMA']:.0f}", lds,
            *(f"{c[k]:.0f}" for k in ("LDG", "INT", "BRANCH", "BARRIER", "CALL", "OTHER")), f"{sum(c.values()):.0f}",
            f"{row.loop_ffma_share:.0%} / {row.ffma_share:.0%}", f"{row.fill:.0%}" if row.fill >= 0.1 else f"{row.fill:.1%}",
            *(f"{row.ceiling_tflops[gpu]:.1f}" for gpu in GPUS))  # fmt: skip


def memory_cells(row):
    regs, occupancy, local, div = _common(row)
    return (_label(row), row.shape, " + ".join(dict.fromkeys(row.kernels)), regs, occupancy, local, div,
            f"{row.bytes / 1e6:.1f}", f"{row.bytes_per_element:.1f}", *(f"{row.dram_us[gpu]:.1f}" for gpu in GPUS))  # fmt: skip


def _text_table(headers, cells):
    widths = [max(len(r[i]) for r in [headers, *cells]) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(headers), "-" * len(line(headers))] + [line(r) for r in cells])


def _md_table(headers, cells):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    return "\n".join(out + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in cells])


def _tables(rows, table):
    matmul = [matmul_cells(r) for r in rows if r.kind == "matmul"]
    memory = [memory_cells(r) for r in rows if r.kind != "matmul"]
    return table(_MATMUL, matmul), table(_MEMORY, memory)


def format_text(rows, batch, arch):
    matmul, memory = _tables(rows, _text_table)
    return "\n\n".join([
        f"Matrix passes at batch {batch}, {arch}: instructions per thread per K tile (the whole pass's, see below)",
        matmul, f"Memory-bound passes at batch {batch}: DRAM-bound time", memory, format_step_models(rows, batch)])  # fmt: skip


def format_markdown(rows, batch, arch, header=""):
    matmul, memory = _tables(rows, _md_table)
    model = format_step_models(rows, batch)
    return "\n\n".join(part for part in [
        header,
        f"### Matrix passes at batch {batch}, {arch}: instructions per thread per K tile",
        matmul,
        f"### Memory-bound passes at batch {batch}: DRAM-bound time",
        memory,
        "### Step model",
        "```\n" + model + "\n```",
    ] if part) + "\n"  # fmt: skip


def to_json(rows, batch, arch, toolchain, command):
    models = {gpu: vars(step_model(rows, gpu)) | {"total_ms": step_model(rows, gpu).total_ms} for gpu in GPUS}
    return json.dumps({
        "command": command, "batch": batch, "arch": arch, "toolchain": toolchain.describe(),
        "gpus": {gpu: {"fp32_flops": peak, "dram_bytes_per_s": bw} for gpu, (peak, bw) in GPUS.items()},
        "rows": [r.to_json() for r in rows],
        "step_model": models,
        "anchors": {"cudnn_r4_titan_x_owt_ms": CUDNN_R4_TITAN_X_MS, "measured_ms": None},
    }, indent=1)  # fmt: skip
