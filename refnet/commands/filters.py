"""Draw a layer's kernels: `refnet filters --checkpoint CKPT [--layer conv1] [--png PATH] [--scale N]`.

The paper's Figure 3 for conv1: each kernel an RGB tile (channel 0 red, 1 green, 2 blue, the
order of refnet's input), 16 to a row. Deeper layers have too many input channels for colour: one
row per kernel, one grey tile per input channel of its group. Each kernel is stretched to its own
range (its minimum black, its maximum white; a constant kernel mid-grey), or with --shared-range
to one range for the whole layer, which shows which kernels are strong. The paper variant's two
towers (kernels 0..K/2-1 on the first GPU, the rest on the second) are two labelled blocks of rows.
"""

import os
import sys

import numpy as np

CONV1_COLUMNS = 16
GAP = 1  # pixels between tiles
LABEL_HEIGHT = 14  # pixels of the band above a block that holds its label
BACKGROUND = (255, 255, 255)


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by `refnet train`")
    parser.add_argument("--layer", default="conv1", help="a convolution layer: conv1 ... conv5 (default: conv1)")
    parser.add_argument("--png", metavar="PATH", help="output picture (default: <CKPT without .h5>-<layer>.png beside it)")
    parser.add_argument("--scale", type=int, default=4, metavar="N", help="screen pixels per kernel pixel (default: 4)")
    parser.add_argument("--shared-range", action="store_true",
                        help="one intensity range for every kernel of the layer instead of one per kernel")  # fmt: skip


def normalise(weights, shared_range):
    """Kernels (K, ...) -> uint8 in [0, 255]: each kernel's (or, shared, the layer's) min -> 0, max -> 255."""
    w = weights.astype(np.float64).reshape(weights.shape[0], -1)
    if shared_range:
        lo = np.full((w.shape[0], 1), w.min())
        hi = np.full((w.shape[0], 1), w.max())
    else:
        lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    span = hi - lo
    scaled = np.where(span > 0, (w - lo) / np.where(span > 0, span, 1.0), 0.5)
    return np.rint(scaled * 255).astype(np.uint8).reshape(weights.shape)


def tower_blocks(kernels, variant):
    """[(label or None, first kernel, end kernel)]: two towers for the paper variant, one block otherwise."""
    if variant == "paper":
        half = kernels // 2
        return [("tower 1 (first GPU)", 0, half), ("tower 2 (second GPU)", half, kernels)]
    return [(None, 0, kernels)]


def kernel_grid(weights, variant="seed", scale=4, shared_range=False):
    """(RGB uint8 image (H, W, 3), {kernel: (x, y) of its tile's top-left}, [(label, x, y)]).

    weights (K, C, R, S): C == 3 draws one RGB tile per kernel, CONV1_COLUMNS to a row; otherwise
    one row per kernel of C grey tiles (one per input channel)."""
    k, c, r, s = weights.shape
    pixels = normalise(weights, shared_range)
    rgb = c == 3
    tile_h, tile_w = r * scale, s * scale
    columns = min(CONV1_COLUMNS, k) if rgb else c
    blocks = tower_blocks(k, variant)
    step_x, step_y = tile_w + GAP, tile_h + GAP
    layout, y = [], GAP
    labels = []
    for label, first, end in blocks:
        if label is not None:
            labels.append((label, GAP, y))
            y += LABEL_HEIGHT
        rows = -(-(end - first) // columns) if rgb else end - first
        layout.append((first, end, y))
        y += rows * step_y
    height, width = y, GAP + columns * step_x
    image = np.empty((height, width, 3), np.uint8)
    image[...] = BACKGROUND
    cells = {}
    for first, end, top in layout:
        for kernel in range(first, end):
            index = kernel - first
            if rgb:
                x0, y0 = GAP + (index % columns) * step_x, top + (index // columns) * step_y
                tile = pixels[kernel].transpose(1, 2, 0).repeat(scale, 0).repeat(scale, 1)
                image[y0 : y0 + tile_h, x0 : x0 + tile_w] = tile
            else:
                x0, y0 = GAP, top + index * step_y
                for channel in range(c):
                    tile = pixels[kernel, channel].repeat(scale, 0).repeat(scale, 1)
                    cx = GAP + channel * step_x
                    image[y0 : y0 + tile_h, cx : cx + tile_w] = tile[:, :, None]
            cells[kernel] = (x0, y0)
    return image, cells, labels


def save_grid(image, labels, path):
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for text, x, y in labels:
        draw.text((x, y), text, fill=(0, 0, 0))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    picture.save(path)
    return path


def default_png(checkpoint, suffix):
    """<CKPT without .h5>-<suffix>.png, next to the checkpoint."""
    stem = checkpoint[:-3] if checkpoint.endswith(".h5") else checkpoint
    return f"{stem}-{suffix}.png"


def run(args) -> int:
    from ..checkpoint import CheckpointError, load_checkpoint
    from ._args import below_minimum

    problem = below_minimum((("--scale", args.scale, 1),))
    if problem:
        print(f"refnet filters: error: {problem}", file=sys.stderr)
        return 2
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"refnet filters: error: {exc}", file=sys.stderr)
        return 2
    name = f"{args.layer}.weight"
    convs = [n[: -len(".weight")] for n, v in ckpt.params.items() if n.endswith(".weight") and v.ndim == 4]
    if name not in ckpt.params or args.layer not in convs:
        print(f"refnet filters: error: --layer: expected one of {', '.join(convs)}, got {args.layer!r}", file=sys.stderr)
        return 2
    weights = ckpt.params[name]
    variant = ckpt.config.get("variant", "seed")
    image, _, labels = kernel_grid(weights, variant, args.scale, args.shared_range)
    path = args.png or default_png(args.checkpoint, args.layer)
    save_grid(image, labels, path)
    k, c, r, s = weights.shape
    what = "RGB tiles" if c == 3 else f"rows of {c} channel slices"
    towers = ", two towers" if variant == "paper" else ""
    print(f"wrote {path}: {args.layer}, {k} kernels of {c}x{r}x{s} as {what}{towers}, "
          f"{'one range for the layer' if args.shared_range else 'each kernel to its own range'}, "
          f"{image.shape[1]}x{image.shape[0]} px")  # fmt: skip
    return 0
