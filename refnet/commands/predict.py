"""Classify image files: `refnet predict --checkpoint CKPT IMAGE...` prints each file's top-5 classes.

Each file goes through the same code as the training data: data_tools.preprocess.load_image (the
converter's EXIF / RGB / shorter-side resize / centre crop to the converted size), then the
reader's evaluation crop (refnet.data: the centre crop window of `crop_windows`, and the
`augment_crops` kernel subtracting the training mean image, with no flip and no colour noise).
The class names, the mean image and the input convention (its `preprocessing` record:
refnet/preprocess.py) come from the checkpoint, so nothing else is needed.
"""

import json
import sys

import numpy as np

TOP_K = 5


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by `refnet train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the network runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")


def network_inputs(images, mean_image, crop, preprocessing=None):
    """uint8 (N, S, S, 3) converted images -> float32 (N, 3, crop, crop): the reader's centre crop
    minus the mean image, computed by the reader's own kernel; then `preprocessing`'s channel order
    and scale (its mean is the one given here: Preprocessing.reader_mean_image)."""
    from ..data.augment import augment_crops
    from ..data.shards import crop_windows

    n, size = images.shape[0], images.shape[1]
    top, left, flip = crop_windows(size, crop, ten_crop=False)
    x = np.empty((n, 3, crop, crop), dtype=np.float32)
    no_noise = np.zeros(3, dtype=np.float32)
    augment_crops(x, np.ascontiguousarray(images), np.arange(n, dtype=np.int64), np.repeat(top, n),
                  np.repeat(left, n), np.repeat(flip, n), np.zeros((n, 3), dtype=np.float32),
                  np.ascontiguousarray(mean_image, dtype=np.float32), no_noise, np.zeros((3, 3), np.float32))  # fmt: skip
    return x if preprocessing is None else preprocessing.finish(x)


def predict_files(net, paths, *, image_size, mean_image, classes, k=TOP_K, preprocessing=None):
    """[(path, [(class name, probability), ...] or None, error text or None)] for every path, in order."""
    from data_tools.preprocess import SkipImage, load_image

    from ..evaluate import softmax_rows, top_k_classes

    loaded, results = [], {}
    for index, path in enumerate(paths):
        try:
            loaded.append((index, load_image(path, image_size)))
        except (SkipImage, OSError) as exc:
            results[index] = (path, None, str(exc))
    if loaded:
        x = network_inputs(np.stack([image for _, image in loaded]), mean_image, net.input_size, preprocessing)
        logits = net.forward(x, train=False)
        probs = softmax_rows(logits.copy_to_host() if hasattr(logits, "copy_to_host") else logits)
        top = top_k_classes(probs, k)
        for row, (index, _) in enumerate(loaded):
            results[index] = (paths[index], [(classes[c], float(probs[row, c])) for c in top[row]], None)
    return [results[i] for i in range(len(paths))]


def run(args) -> int:
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..evaluate import network_from_checkpoint
    from ..preprocess import Preprocessing
    from ..trainer import check_device

    try:
        check_device(args.device)
        ckpt = load_checkpoint(args.checkpoint)
        preprocessing = Preprocessing.from_dict(ckpt.preprocessing)
        if not ckpt.classes:
            raise ValueError(f"{args.checkpoint} holds no class names")
        mean_image = preprocessing.reader_mean_image(preprocessing.resize, ckpt.mean_image)
    except (CheckpointError, ValueError) as exc:
        print(f"refnet predict: error: {exc}", file=sys.stderr)
        return 2
    net = network_from_checkpoint(ckpt, args.device)
    results = predict_files(net, args.images, image_size=preprocessing.resize, mean_image=mean_image,
                            classes=ckpt.classes, preprocessing=preprocessing)  # fmt: skip
    failed = 0
    for path, top, error in results:
        if error is not None:
            failed += 1
            print(f"refnet predict: {path}: cannot read: {error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"path": path, "top": [{"class": name, "probability": p} for name, p in top]}))
        else:
            print(path)
            for rank, (name, p) in enumerate(top, 1):
                print(f"  {rank}. {name:<24} {100 * p:6.2f}%")
    return 1 if failed else 0
