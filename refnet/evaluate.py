"""Evaluate a network: the errors behind `refnet eval` (refnet/commands/eval.py) and the trainer's validation.

Top-1 and top-5 error with the centre crop, and (--ten-crop) with the paper's 10-crop test:
the softmax outputs of the four corner crops, the centre crop and their five mirror images are
averaged per image (Krizhevsky et al. 2012, section 4.1) before taking the top classes. Also the
most confused class pairs (true class -> predicted class) of the top-1 predictions.

The softmax is refnet's own kernel (ops.softmax_cross_entropy); the crops are the reader's
(refnet.data ShardDataset.batches with train=False).
"""

import numpy as np

TOP_K = 5


def softmax_rows(logits):
    """Row-wise softmax of float32 (N, K) logits with refnet's kernel (labels are needed by the kernel, not used)."""
    from . import ops

    labels = np.zeros(logits.shape[0], dtype=np.int32)
    _, probs = ops.softmax_cross_entropy(np.ascontiguousarray(logits, dtype=np.float32), labels)
    return probs


def crop_probabilities(net, x):
    """Softmax outputs for a batch: x (B, 3, c, c) -> (B, K); x (B, V, 3, c, c) -> (B, K), averaged over the V views."""
    if x.ndim == 4:
        return softmax_rows(_logits(net, x))
    batch, views = x.shape[0], x.shape[1]
    probs = softmax_rows(_logits(net, np.ascontiguousarray(x.reshape((batch * views,) + x.shape[2:]))))
    return probs.reshape(batch, views, -1).mean(axis=1, dtype=np.float64).astype(np.float32)


def _logits(net, x):
    logits = net.forward(x, train=False)
    return logits.copy_to_host() if hasattr(logits, "copy_to_host") else np.asarray(logits)


def top_k_classes(probs, k=TOP_K):
    """The k most probable classes of each row, most probable first (ties: the lower class index first)."""
    k = min(k, probs.shape[1])
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


class ErrorCounter:
    """Accumulates top-1 / top-5 errors, the mean loss and the top-1 confusion matrix over batches."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.count = 0
        self.top1_wrong = 0
        self.top5_wrong = 0
        self.loss_sum = 0.0
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # [true, predicted]

    def add(self, probs, labels):
        top = top_k_classes(probs)
        labels = np.asarray(labels, dtype=np.int64)
        self.count += len(labels)
        self.top1_wrong += int((top[:, 0] != labels).sum())
        self.top5_wrong += int((top != labels[:, None]).all(axis=1).sum())
        picked = probs[np.arange(len(labels)), labels].astype(np.float64)
        self.loss_sum += float(-np.log(np.maximum(picked, np.finfo(np.float32).tiny)).sum())
        np.add.at(self.confusion, (labels, top[:, 0]), 1)

    def sum_over_ranks(self, world):
        """Replace every count with its sum over the data-parallel ranks (refnet.distributed)."""
        if world.size == 1:
            return
        from .distributed import allreduce_sum

        counts = np.concatenate([[self.count, self.top1_wrong, self.top5_wrong], self.confusion.reshape(-1)])
        counts = allreduce_sum(counts.astype(np.int64), world)
        self.count, self.top1_wrong, self.top5_wrong = (int(c) for c in counts[:3])
        self.confusion = counts[3:].reshape(self.confusion.shape)
        self.loss_sum = float(allreduce_sum(np.array([self.loss_sum]), world)[0])

    def result(self):
        n = max(self.count, 1)
        return {
            "images": self.count,
            "top1_error": self.top1_wrong / n,
            "top5_error": self.top5_wrong / n,
            "loss": self.loss_sum / n,
        }


def most_confused_pairs(confusion, classes, limit=10):
    """Off-diagonal (true -> predicted) pairs with the most mistakes: [{true, predicted, count, fraction}]."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    totals = confusion.sum(axis=1)
    order = np.argsort(-off, axis=None, kind="stable")
    pairs = []
    for flat in order[:limit]:
        true, predicted = np.unravel_index(flat, off.shape)
        count = int(off[true, predicted])
        if count == 0:
            break
        pairs.append({
            "true": classes[true],
            "predicted": classes[predicted],
            "count": count,
            "fraction": count / max(int(totals[true]), 1),
        })
    return pairs


def evaluate(net, dataset, *, crop, batch_size=128, ten_crop=False, progress=False, desc="eval", world=None,
             preprocessing=None):
    """Errors of `net` on every image of `dataset` (centre crop, or 10-crop averaged); see ErrorCounter.
    `preprocessing` (refnet.preprocess.Preprocessing): the channel order and scale applied to the
    reader's crops (the mean it subtracts is the dataset's, see prepare_dataset).

    With a data-parallel `world` (refnet.distributed), each rank evaluates its share of every batch
    and the counts are summed over the ranks, so every rank returns the whole dataset's result.
    A `net` without a `device` attribute (any object with refnet's forward) counts as a CPU one.
    """
    from tqdm import tqdm

    from .data.prefetch import depth_for as prefetch_depth_for
    from .distributed import World

    world = world or World()
    images_per_batch = max(1, batch_size // 10) if ten_crop else batch_size
    counter = ErrorCounter(len(dataset.classes))
    batches = dataset.batches(images_per_batch, train=False, crop=crop, ten_crop=ten_crop,
                              part=(world.rank, world.size),
                              prefetch_depth=prefetch_depth_for(getattr(net, "device", "cpu")))  # fmt: skip
    total = -(-len(dataset) // images_per_batch)
    with tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress, leave=False) as bar:
        for x, labels in bar:
            if len(labels):  # a rank's share of a last batch smaller than the number of ranks
                x = preprocessing.finish(x) if preprocessing is not None else x
                counter.add(crop_probabilities(net, x), labels)
    counter.sum_over_ranks(world)
    result = counter.result()
    result["confusion"] = counter.confusion
    return result


def network_from_checkpoint(ckpt, device="cpu"):
    """An AlexNet in evaluation mode with the checkpoint's parameters, built from its `network`
    record: its layer order and LRN constants."""
    from .model import AlexNet

    net = AlexNet.from_network_config(ckpt.network, device=device, seed=ckpt.config.get("seed", 0))
    net.load_state_dict(ckpt.params)
    return net


def prepare_dataset(ckpt, dataset):
    """The checkpoint's Preprocessing, with `dataset` set to subtract its mean: a per-channel mean,
    or the mean image (the checkpoint's when it matches the stored size, else stats.h5's)."""
    from .preprocess import Preprocessing

    preprocessing = Preprocessing.from_dict(ckpt.preprocessing)
    size = dataset.image_size
    image = ckpt.mean_image if ckpt.mean_image is not None and ckpt.mean_image.shape == (size, size, 3) else None
    image = dataset.stats["mean_image"] if image is None else image
    if preprocessing.mean == "image" and image is None:
        raise ValueError(f"the checkpoint subtracts the mean image: it holds none of {size}x{size} and the "
                         f"dataset has no stats.h5")  # fmt: skip
    dataset.subtract_mean_image(preprocessing.reader_mean_image(size, image))
    return preprocessing


def format_report(name, result, classes, pairs=10):
    lines = [f"{name}: top-1 error {100 * result['top1_error']:.2f}%  top-5 error {100 * result['top5_error']:.2f}%"
             f"  loss {result['loss']:.4f}  ({result['images']} images)"]
    confused = most_confused_pairs(result["confusion"], classes, pairs)
    if confused:
        lines.append("  most confused (true -> predicted):")
        for pair in confused:
            lines.append(f"    {pair['true']} -> {pair['predicted']}: {pair['count']} ({100 * pair['fraction']:.1f}% of {pair['true']})")
    return "\n".join(lines)
