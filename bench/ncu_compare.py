"""Nsight Compute's counters of bench/gpu_profile.py's launches beside `refnet sass`'s prediction.

    python3 bench/ncu_compare.py NCU_CSV SASS_JSON [--md PATH]

NCU_CSV is `ncu --csv --print-units base --metrics METRICS` output (one row per launch and
metric); SASS_JSON is `refnet sass --json` output. Per profiled launch (in gpu_profile.PASSES
order): achieved occupancy against the static resident warps, and the issued FFMA share (thread
FFMAs / 32 over warp instructions executed) against the static one of the main loop and of the pass.
"""

import argparse
import csv
import io
import json
import sys

METRICS = (
    "gpu__time_duration.sum",
    "launch__registers_per_thread",
    "sm__warps_active.avg.pct_of_peak_sustained_active",  # achieved occupancy
    "smsp__inst_executed.sum",  # warp instructions executed
    "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum",  # thread FFMAs
)


def read_ncu_csv(text):
    """[{metric: float}] per profiled launch, in launch order, from ncu's CSV (details page)."""
    lines = text[text.find('"ID"'):] if '"ID"' in text else text  # ncu prints its own log lines first
    launches = {}
    for row in csv.DictReader(io.StringIO(lines)):
        if not row.get("Metric Name"):
            continue
        value = row["Metric Value"].replace(",", "")
        try:
            launches.setdefault(int(row["ID"]), {"kernel": row.get("Kernel Name", "")})[row["Metric Name"]] = float(value)
        except ValueError:
            continue
    return [launches[i] for i in sorted(launches)]


def compare(launches, sass, passes):
    rows = {r["name"]: r for r in sass["rows"] if r["variant"] == "seed"}
    out = []
    for name, m in zip(passes, launches):
        static = rows.get(name, {})
        ffma_share = m.get("smsp__sass_thread_inst_executed_op_ffma_pred_on.sum", 0) / 32 / max(m.get("smsp__inst_executed.sum", 0), 1)
        out.append({
            "pass": name,
            "time_ms": m.get("gpu__time_duration.sum", 0) / 1e6,
            "registers": (int(m.get("launch__registers_per_thread", 0)), static.get("registers")),
            "occupancy_pct": (m.get("sm__warps_active.avg.pct_of_peak_sustained_active"), 100 * static.get("warps_per_sm", 0) / 64),
            "ffma_share": (ffma_share, static.get("loop_ffma_share"), static.get("ffma_share")),
        })  # fmt: skip
    return out


def markdown(results):
    lines = ["| pass | time (ms, ncu) | registers ncu / static | occupancy % achieved / static resident | "
             "FFMA share issued / static loop / static pass |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        regs, occ, share = r["registers"], r["occupancy_pct"], r["ffma_share"]
        pct = lambda v: "n/a" if v is None else f"{v:.1%}"
        lines.append(f"| {r['pass']} | {r['time_ms']:.3f} | {regs[0]} / {regs[1]} | "
                     f"{'n/a' if occ[0] is None else f'{occ[0]:.1f}'} / {occ[1]:.1f} | "
                     f"{pct(share[0])} / {pct(share[1])} / {pct(share[2])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from bench.gpu_profile import PASSES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ncu_csv")
    parser.add_argument("sass_json")
    parser.add_argument("--md", help="also write the table here")
    args = parser.parse_args(argv)
    with open(args.ncu_csv) as f:
        launches = read_ncu_csv(f.read())
    with open(args.sass_json) as f:
        sass = json.load(f)
    if len(launches) < len(PASSES):
        print(f"ncu_compare: {len(launches)} profiled launches in {args.ncu_csv}, expected {len(PASSES)}", file=sys.stderr)
        return 1
    table = markdown(compare(launches, sass, PASSES))
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
