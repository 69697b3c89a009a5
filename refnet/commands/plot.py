"""Draw a run's training curves: `refnet plot RUN_DIR` writes RUN_DIR/curves.png.

Left: training loss against epochs (every logged step, and each epoch's mean). Right: top-1 and
top-5 error, training and validation, against epochs. Reads RUN_DIR/metrics.jsonl as written by
`refnet train` (one JSON object per line, "kind" "step" or "epoch").
"""

import os
import sys

from ..metrics import read_metrics


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `refnet train`")
    parser.add_argument("--out", help="PNG path (default: RUN_DIR/curves.png)")


def _series(records, kind, key):
    points = [(r["epoch"], r[key]) for r in records if r.get("kind") == kind and r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(records, out_path, title="") -> str:
    """Write the loss and error curves of `records` to `out_path` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs, ys = _series(records, "step", "train_loss")
    if xs:
        ax_loss.plot(xs, ys, color="tab:blue", alpha=0.35, linewidth=0.8, label="train loss (steps)")
    xs, ys = _series(records, "epoch", "train_loss")
    if xs:
        ax_loss.plot(xs, ys, "o-", color="tab:blue", label="train loss (epoch mean)")
    xs, ys = _series(records, "epoch", "val_loss")
    if xs:
        ax_loss.plot(xs, ys, "s-", color="tab:orange", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()

    styles = {
        "train_top1_error": ("tab:blue", "-", "train top-1"),
        "train_top5_error": ("tab:blue", "--", "train top-5"),
        "val_top1_error": ("tab:orange", "-", "val top-1"),
        "val_top5_error": ("tab:orange", "--", "val top-5"),
    }
    for key, (colour, dash, label) in styles.items():
        xs, ys = _series(records, "epoch", key)
        if xs:
            ax_err.plot(xs, [100.0 * y for y in ys], marker="o", linestyle=dash, color=colour, label=label)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    ax_err.set_ylim(0, 100)
    ax_err.grid(alpha=0.3)
    ax_err.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def run(args) -> int:
    try:
        records = read_metrics(args.run_dir)
    except FileNotFoundError as exc:
        print(f"refnet plot: {exc}", file=sys.stderr)
        return 2
    if not records:
        print(f"refnet plot: {args.run_dir}/metrics.jsonl holds no records yet", file=sys.stderr)
        return 2
    out = args.out or os.path.join(args.run_dir, "curves.png")
    plot_curves(records, out, title=os.path.basename(os.path.abspath(args.run_dir)))
    print(f"wrote {out}")
    return 0
