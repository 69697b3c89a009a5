"""Time every layer inside a training step: `refnet profile [--device cpu|cuda] [--batch 32] [--peer torch]`.

One training step of the whole network (forward, loss, backward, the paper's SGD update) is timed
with bench/timing.py's `time_interleaved` (the clock `refnet bench` uses; with --peer torch the
two sides take turns, so outside load falls on both), and every refnet.ops call inside the timed
steps is timed on its own and charged to its layer: the forward calls come in layer order, then
the loss, then the backward calls in reverse. The figure per layer is the median over the timed
steps. On the GPU each op is followed by a synchronisation so that its time is its own; the sum
of the layers is then a little over an unsynchronised step.

`refnet bench` times each op in isolation; this shows what each layer costs inside a real step,
and with --peer torch (PyTorch, imported from bench/layer_peer.py when installed) the same
layer's time in PyTorch beside it, so the layers refnet loses on stand out.
"""

import os
import statistics
import sys
import time

import numpy as np

OPS_OF_KIND = {
    "conv": ("conv2d_forward", "conv2d_backward"),
    "linear": ("linear_forward", "linear_backward"),
    "relu": ("relu_forward", "relu_backward"),
    "maxpool": ("maxpool2d_forward", "maxpool2d_backward"),
    "lrn": ("lrn_forward", "lrn_backward"),
    "dropout": ("dropout_forward", "dropout_backward"),
}
LOSS_OPS = ("softmax_cross_entropy", "softmax_cross_entropy_backward")
SGD_OP = "sgd_momentum_update"


def add_arguments(parser):
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the step runs (default: cpu)")
    parser.add_argument("--batch", type=int, default=32, metavar="N", help="images per step (default: 32)")
    parser.add_argument("--input-size", type=int, default=227, metavar="N", help="input image side, at least 67 (default: 227)")
    parser.add_argument("--variant", choices=("seed", "paper"), default="seed", help="network variant (default: seed)")
    parser.add_argument("--num-classes", type=int, default=1000, metavar="N", help="fc8's outputs (default: 1000)")
    parser.add_argument("--steps", type=int, default=5, metavar="N", help="timed steps, after one warm-up step (default: 5)")
    parser.add_argument("--peer", choices=("torch",), help="also time PyTorch's step layer by layer (needs torch)")
    parser.add_argument("--png", metavar="PATH",
                        help="stacked bar chart (default: profile-<device>-<variant>-b<batch>-<size>.png here)")  # fmt: skip


class LayerClock:
    """Wraps refnet.ops so that each op call inside a step is timed and charged to its layer."""

    def __init__(self, layers, device):
        self.layers = layers
        self.device = device
        self.calls = []  # (op name, seconds) of the current step
        self.steps = []  # {(part, row): seconds} per finished step

    def _sync(self):
        if self.device == "cuda":
            from numba import cuda

            cuda.synchronize()

    def install(self, ops):
        names = {name for kind in OPS_OF_KIND.values() for name in kind} | set(LOSS_OPS) | {SGD_OP}
        self._originals = {name: getattr(ops, name) for name in names}
        for name, fn in self._originals.items():
            setattr(ops, name, self._timed(name, fn))
        self._ops = ops

    def uninstall(self):
        for name, fn in self._originals.items():
            setattr(self._ops, name, fn)

    def _timed(self, name, fn):
        def timed(*args, **kwargs):
            self._sync()
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            self._sync()
            self.calls.append((name, time.perf_counter() - t0))
            return result

        return timed

    def end_step(self):
        """Charge the step's calls to (part, layer) and start the next step."""
        expected = ([(OPS_OF_KIND[l.kind][0], ("forward", l.name)) for l in self.layers]
                    + [(LOSS_OPS[0], ("forward", "loss")), (LOSS_OPS[1], ("backward", "loss"))]
                    + [(OPS_OF_KIND[l.kind][1], ("backward", l.name)) for l in reversed(self.layers)]
                    + [(SGD_OP, ("forward", "sgd"))])  # fmt: skip
        got = [name for name, _ in self.calls]
        if got != [name for name, _ in expected]:
            raise RuntimeError(f"profile: the step's op calls {got} are not the network's {[n for n, _ in expected]}")
        self.steps.append({key: seconds for (_, key), (_, seconds) in zip(expected, self.calls)})
        self.calls = []

    def record(self, part, row, seconds):
        """The peer's way in: one (part, row) time of the current step."""
        self.calls.append(((part, row), seconds))

    def end_peer_step(self):
        self.steps.append(dict(self.calls))
        self.calls = []


def medians(steps, skip):
    """{(part, row): median ms} over steps[skip:]."""
    timed = steps[skip:]
    return {key: 1e3 * statistics.median(step[key] for step in timed) for key in timed[0]}


def rows_of(layers):
    return [layer.name for layer in layers] + ["loss", "sgd"]


def format_table(rows, ours, step_ms, peer=None, peer_step_ms=None):
    head = ["layer", "forward ms", "backward ms", "total ms", "% of step"]
    if peer is not None:
        head += ["torch fwd ms", "torch bwd ms", "torch total", "refnet / torch"]
    table = [head]
    total = sum(ours.values())
    for row in rows:
        fwd, bwd = ours.get(("forward", row), 0.0), ours.get(("backward", row), 0.0)
        line = [row, f"{fwd:.3f}", f"{bwd:.3f}" if ("backward", row) in ours else "-", f"{fwd + bwd:.3f}",
                f"{100 * (fwd + bwd) / total:.1f}"]  # fmt: skip
        if peer is not None:
            pf, pb = peer.get(("forward", row), 0.0), peer.get(("backward", row), 0.0)
            line += [f"{pf:.3f}", f"{pb:.3f}" if ("backward", row) in peer else "-", f"{pf + pb:.3f}",
                     f"{(fwd + bwd) / (pf + pb):.2f}" if pf + pb > 0 else "-"]  # fmt: skip
        table.append(line)
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]

    def fmt(r):
        return "  ".join(f"{cell:<{w}}" if c == 0 else f"{cell:>{w}}" for c, (cell, w) in enumerate(zip(r, widths)))

    out = [fmt(table[0]), "-" * len(fmt(table[0])), *(fmt(r) for r in table[1:])]
    out.append(f"sum of layers {total:.1f} ms; whole step (median, bench/timing.py) {step_ms:.1f} ms"
               + (f"; torch: sum {sum(peer.values()):.1f} ms, step {peer_step_ms:.1f} ms" if peer is not None else ""))
    return "\n".join(out)


def bar_chart(rows, ours, path, title, peer=None):
    """Stacked bars per layer (forward below, backward on top); refnet and the peer side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    width = 0.4 if peer is not None else 0.7
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(rows)), 4.5))
    sides = [("refnet", ours, -width / 2 if peer is not None else 0, ("tab:blue", "lightsteelblue"))]
    if peer is not None:
        sides.append(("torch", peer, width / 2, ("tab:orange", "navajowhite")))
    for label, times, offset, (dark, light) in sides:
        fwd = np.array([times.get(("forward", r), 0.0) for r in rows])
        bwd = np.array([times.get(("backward", r), 0.0) for r in rows])
        ax.bar(x + offset, fwd, width, color=dark, label=f"{label} forward")
        ax.bar(x + offset, bwd, width, bottom=fwd, color=light, edgecolor=dark, label=f"{label} backward")
    ax.set_xticks(x)
    ax.set_xticklabels(rows, rotation=45, ha="right")
    ax.set_ylabel("ms per step (median)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args) -> int:
    from bench.timing import time_interleaved

    from .. import ops
    from ..model import AlexNet, build_layers
    from ..trainer import check_device
    from ._args import below_minimum

    problem = below_minimum((("--batch", args.batch, 1), ("--input-size", args.input_size, 67),
                             ("--num-classes", args.num_classes, 1), ("--steps", args.steps, 1)))  # fmt: skip
    if problem:
        print(f"refnet profile: error: {problem}", file=sys.stderr)
        return 2
    torch = None
    try:
        check_device(args.device)
        build_layers(args.variant, args.num_classes, args.input_size)
        if args.peer == "torch":
            from bench.peers import load_torch

            torch = load_torch(args.device)
            if torch is None:
                raise ValueError("--peer torch: PyTorch is not installed (pip install torch)")
    except ValueError as exc:
        print(f"refnet profile: error: {exc}", file=sys.stderr)
        return 2

    net = AlexNet(args.num_classes, args.variant, args.input_size, dropout=0.5, device=args.device, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.input_size, args.input_size), dtype=np.float32)
    labels = rng.integers(0, args.num_classes, args.batch).astype(np.int32)
    clock = LayerClock(net.layers, args.device)
    fns = []

    def refnet_step(_):
        net.forward_backward(x, labels)
        ops.sgd_momentum_update(net.flat_params, net.flat_grads, net.flat_momentum, 0.01, 0.9, 5e-4)
        clock.end_step()

    fns.append(refnet_step)
    peer_clock = None
    if torch is not None:
        from bench.layer_peer import torch_layer_step

        peer_clock = LayerClock(net.layers, args.device)
        peer_step = torch_layer_step(torch, net.layers, args.variant, args.input_size, args.num_classes, 0.5, args.device)
        tx, tlabels = torch.from_numpy(x).to(args.device), torch.from_numpy(labels.astype(np.int64)).to(args.device)

        def torch_step(_):
            peer_step(tx, tlabels, peer_clock.record)
            peer_clock.end_peer_step()

        fns.append(torch_step)
    print(f"profiling AlexNet {args.variant}, batch {args.batch}x3x{args.input_size}x{args.input_size}, "
          f"{args.device}: 1 warm-up step + {args.steps} timed" + (", PyTorch in turns" if torch else ""), flush=True)
    clock.install(ops)
    try:
        step_timings = time_interleaved(fns, repeat=args.steps, warmup=1, budget_s=0.0, min_repeat=args.steps,
                                        min_time_s=0.0, max_repeat=args.steps, turn_s=0.0)  # fmt: skip
    finally:
        clock.uninstall()
    rows = rows_of(net.layers)
    ours = medians(clock.steps, skip=1)
    peer = medians(peer_clock.steps, skip=1) if peer_clock else None
    print(format_table(rows, ours, step_timings[0].median_ms, peer, step_timings[1].median_ms if peer else None))
    path = args.png or f"profile-{args.device}-{args.variant}-b{args.batch}-{args.input_size}.png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    title = f"AlexNet {args.variant}, batch {args.batch} at {args.input_size} px, {args.device}: time per layer in one training step"
    bar_chart(rows, ours, path, title, peer)
    print(f"wrote {path}")
    return 0
