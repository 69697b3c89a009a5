"""Nearest training images in feature space: `refnet neighbors --checkpoint CKPT --data OUT [--queries N]`.

The paper's Figure 4: for query images of a split, the training images whose feature vectors are
closest by Euclidean distance. Features are a layer's eval-mode output on the centre crop (the
reader's, as in `refnet eval`); for a layer followed by a ReLU (conv*, fc6, fc7) the ReLU's
output, so `--layer fc7` is the paper's 4096-d vector. Distances go through refnet's GEMM:
||q - t||^2 = ||q||^2 + ||t||^2 - 2 q.t, with q.t from ops.gemm over one batch of training
features at a time and only each query's k best kept, so memory stays bounded for any train split
(the squared norms are float64 numpy sums over rows, O(n F) beside the GEMM's O(n F queries)).

Prints each query's neighbours and how often the nearest one has the query's class, and draws a
contact sheet: one row per query, the query first, then its neighbours nearest first, each with
its class name; a neighbour of another class is framed red and its caption marked "x".
"""

import os
import sys

import numpy as np

CELL_BORDER = 3
CAPTION_HEIGHT = 24
QUERY_FRAME, MATCH_FRAME, MISMATCH_FRAME = (40, 90, 220), (40, 160, 60), (220, 30, 30)


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by `refnet train`")
    parser.add_argument("--data", required=True, metavar="OUT", help="a directory written by `refnet convert`")
    parser.add_argument("--split", default="val", help="split the queries come from (default: val)")
    parser.add_argument("--queries", type=int, default=10, metavar="N",
                        help="query images, drawn at random from the split; 0: every image (default: 10)")  # fmt: skip
    parser.add_argument("--k", type=int, default=6, help="neighbours per query (default: 6)")
    parser.add_argument("--layer", default="fc7", help="feature layer, a name from `refnet summary` (default: fc7)")
    parser.add_argument("--png", metavar="PATH", help="contact sheet (default: <CKPT without .h5>-neighbors.png beside it)")
    parser.add_argument("--rows", type=int, default=10, metavar="N", help="queries drawn on the contact sheet (default: 10)")
    parser.add_argument("--batch-size", type=int, default=128, metavar="N", help="training images per forward pass (default: 128)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the network runs")
    parser.add_argument("--seed", type=int, default=0, help="picks the queries (default: 0)")


def feature_layer(layers, name):
    """Index of the layer whose output is the feature: `name`'s, or the ReLU right after it."""
    names = [layer.name for layer in layers]
    if name not in names:
        raise ValueError(f"--layer: expected one of {', '.join(names)}, got {name!r}")
    index = names.index(name)
    if index + 1 < len(layers) and layers[index + 1].kind == "relu":
        index += 1
    return index


def features(net, layer_index, x):
    """(n, F) float32 features of the float32 NCHW batch x."""
    net.forward(x, train=False)
    return np.ascontiguousarray(net.last_activation(layer_index, x.shape[0]).reshape(x.shape[0], -1))


class TopK:
    """The k smallest squared distances seen so far per query, with the training image numbers."""

    def __init__(self, queries, k):
        self.k = k
        self.distance = np.full((queries, 0), np.inf)
        self.index = np.zeros((queries, 0), np.int64)

    def add(self, distance, first):
        """distance (queries, B) to training images first .. first + B - 1."""
        index = np.broadcast_to(np.arange(first, first + distance.shape[1]), distance.shape)
        merged_d = np.concatenate([self.distance, distance], axis=1)
        merged_i = np.concatenate([self.index, index], axis=1)
        if merged_d.shape[1] > self.k:
            keep = np.argpartition(merged_d, self.k - 1, axis=1)[:, : self.k]
            merged_d = np.take_along_axis(merged_d, keep, axis=1)
            merged_i = np.take_along_axis(merged_i, keep, axis=1)
        self.distance, self.index = merged_d, merged_i

    def result(self):
        """(distance, index), each (queries, k), nearest first (ties: the lower image number first)."""
        order = np.lexsort((self.index, self.distance), axis=1)
        return np.take_along_axis(self.distance, order, axis=1), np.take_along_axis(self.index, order, axis=1)


def nearest_neighbours(query_features, train_batches, k, exclude=None, progress=None):
    """(squared distances, training image numbers), (queries, k) each, nearest first.

    train_batches yields float32 (B, F) feature batches in image-number order; exclude[i] is a
    training image number query i must not match (itself, when the queries come from the train
    split) or -1."""
    from .. import ops

    q = np.ascontiguousarray(query_features, dtype=np.float32)
    q_norms = (q.astype(np.float64) ** 2).sum(axis=1)[:, None]
    best = TopK(len(q), k)
    first = 0
    for batch in train_batches:
        dots = ops.gemm(q, np.ascontiguousarray(batch, dtype=np.float32), trans_b=True)  # (queries, B)
        t_norms = (batch.astype(np.float64) ** 2).sum(axis=1)[None, :]
        distance = np.maximum(q_norms + t_norms - 2.0 * dots, 0.0)  # rounding can dip just under 0
        if exclude is not None:
            own = exclude[:, None] == np.arange(first, first + len(batch))[None, :]
            distance[own] = np.inf
        best.add(distance, first)
        first += len(batch)
        if progress is not None:
            progress.update(len(batch))
    return best.result()


def contact_sheet(query_images, query_labels, neighbour_images, neighbour_labels, classes, distances=None):
    """(RGB uint8 sheet, {(row, column): (x, y) of the image's top-left}): row r holds query r then its neighbours."""
    from PIL import Image, ImageDraw

    rows, k = neighbour_labels.shape
    size = query_images.shape[1]
    cell_w, cell_h = size + 2 * CELL_BORDER, size + 2 * CELL_BORDER + CAPTION_HEIGHT
    sheet = Image.new("RGB", ((k + 1) * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    origins = {}
    for row in range(rows):
        cells = [(query_images[row], query_labels[row], QUERY_FRAME, f"query: {classes[query_labels[row]]}")]
        for j in range(k):
            label = neighbour_labels[row, j]
            match = label == query_labels[row]
            caption = ("" if match else "x ") + classes[label]
            if distances is not None:
                caption += f"\nd {np.sqrt(distances[row, j]):.3g}"
            cells.append((neighbour_images[row, j], label, MATCH_FRAME if match else MISMATCH_FRAME, caption))
        for column, (image, _, frame, caption) in enumerate(cells):
            x, y = column * cell_w, row * cell_h
            draw.rectangle([x, y, x + cell_w - 1, y + size + 2 * CELL_BORDER - 1], fill=frame)
            sheet.paste(Image.fromarray(image), (x + CELL_BORDER, y + CELL_BORDER))
            draw.text((x + CELL_BORDER, y + size + 2 * CELL_BORDER + 1), caption, fill=(0, 0, 0))
            origins[(row, column)] = (x + CELL_BORDER, y + CELL_BORDER)
    return np.asarray(sheet), origins


def _check_args(args):
    from ._args import below_minimum

    problem = below_minimum((("--queries", args.queries, 0), ("--k", args.k, 1), ("--rows", args.rows, 0),
                             ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0)))  # fmt: skip
    if problem:
        raise ValueError(problem)


def run(args) -> int:
    from tqdm import tqdm

    from ..checkpoint import CheckpointError, load_checkpoint
    from ..data import ShardDataset
    from ..evaluate import network_from_checkpoint
    from ..trainer import check_device
    from .filters import default_png
    from .predict import network_inputs

    try:
        _check_args(args)
        check_device(args.device)
        ckpt = load_checkpoint(args.checkpoint)
        train = ShardDataset(args.data, "train", progress=False)
        split = train if args.split == "train" else ShardDataset(args.data, args.split, progress=False)
        if len(train.classes) != ckpt.config["num_classes"]:
            raise ValueError(f"--data {args.data} has {len(train.classes)} classes, the checkpoint was trained on "
                             f"{ckpt.config['num_classes']}")  # fmt: skip
        net = network_from_checkpoint(ckpt, args.device)
        layer_index = feature_layer(net.layers, args.layer)
        if args.k > len(train) - (args.split == "train"):
            raise ValueError(f"--k {args.k}: the train split holds only {len(train)} images")
    except (CheckpointError, ValueError, RuntimeError) as exc:
        print(f"refnet neighbors: error: {exc}", file=sys.stderr)
        return 2
    crop = int(ckpt.config["input_size"])
    count = len(split) if args.queries == 0 else min(args.queries, len(split))
    queries = np.sort(np.random.default_rng(args.seed).choice(len(split), count, replace=False))
    query_labels = split.labels[queries]
    query_features = np.concatenate([  # read a batch at a time: 50,000 stored images would not fit
        features(net, layer_index, network_inputs(split.read(queries[i : i + args.batch_size]),
                                                  train.stats["mean_image"], crop))
        for i in range(0, count, args.batch_size)
    ])  # fmt: skip
    train_features = (features(net, layer_index, x)
                      for x, _ in train.batches(args.batch_size, train=False, crop=crop))  # fmt: skip
    exclude = queries if args.split == "train" else None
    with tqdm(total=len(train), desc=f"{args.layer} of the train split", unit="img", leave=False) as bar:
        distances, neighbours = nearest_neighbours(query_features, train_features, args.k, exclude, bar)
    neighbour_labels = train.labels[neighbours]

    classes = train.classes
    for q in range(count):
        listed = ", ".join(f"{classes[c]}{'' if c == query_labels[q] else ' (x)'} {np.sqrt(d):.3g}"
                           for c, d in zip(neighbour_labels[q], distances[q]))  # fmt: skip
        print(f"{args.split} #{queries[q]} {classes[query_labels[q]]}: {listed}")
    same = int((neighbour_labels[:, 0] == query_labels).sum())
    print(f"nearest neighbour ({args.layer}, Euclidean) of the query's class: {same} of {count} queries "
          f"({100 * same / count:.1f}%); all {args.k} neighbours: "
          f"{100 * (neighbour_labels == query_labels[:, None]).mean():.1f}%")  # fmt: skip
    rows = min(args.rows, count)
    if rows:
        from PIL import Image

        query_images = split.read(queries[:rows])
        neighbour_images = train.read(neighbours[:rows].reshape(-1)).reshape(rows, args.k, *query_images.shape[1:])
        sheet, _ = contact_sheet(query_images, query_labels[:rows], neighbour_images, neighbour_labels[:rows], classes,
                                 distances[:rows])  # fmt: skip
        path = args.png or default_png(args.checkpoint, "neighbors")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(sheet).save(path)
        print(f"wrote {path}: {rows} queries, {args.k} neighbours each")
    return 0
