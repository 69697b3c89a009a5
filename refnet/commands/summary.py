"""Print AlexNet's per-layer table: `refnet summary [--variant seed|paper] [--input-size N]`.

The table comes from the layer specs alone (refnet/summary.py): nothing is allocated and no
kernel is compiled, so it answers at once for any variant and input size.
"""

import sys

from ..summary import format_summary


def add_arguments(parser):
    parser.add_argument("--variant", choices=("seed", "paper"), default="seed",
                        help="seed: one group everywhere, max-pool before LRN (the seed's table); paper: groups=2 "
                             "in conv2, conv4, conv5, LRN before max-pool (section 3.5) (default: seed)")  # fmt: skip
    parser.add_argument("--order", choices=("pool-lrn", "lrn-pool"), default=None,
                        help="override the variant's order of max-pool and LRN in layers 1-2")  # fmt: skip
    parser.add_argument("--input-size", type=int, default=227, metavar="N",
                        help="input image side in pixels, at least 67 (default: 227)")  # fmt: skip
    parser.add_argument("--num-classes", type=int, default=1000, metavar="N",
                        help="number of output classes (default: 1000)")  # fmt: skip


def run(args) -> int:
    from ..model import build_layers, check_order

    try:
        layers = build_layers(args.variant, args.num_classes, args.input_size, dropout=0.5, order=args.order)
    except ValueError as exc:
        print(f"refnet summary: {exc}", file=sys.stderr)
        return 2
    print(format_summary(layers, args.variant, args.input_size, check_order(args.variant, args.order)))
    return 0
