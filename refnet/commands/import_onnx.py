"""Import an ONNX AlexNet into a refnet checkpoint: `refnet import MODEL.onnx --checkpoint-out CKPT.h5`.

The graph's layer order, LRN constants and dropout come from the graph (refnet/onnx_io.py says
what converts and how); its input convention is not part of ONNX, so it is given here (Caffe's
models, e.g. the model zoo's bvlcalexnet: --bgr --mean 104,117,123) or read back from a graph
`refnet export` wrote. `refnet eval` and `refnet predict` then apply it. Nothing is written unless
the whole graph imports.
"""

import os
import sys


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.onnx", help="an ONNX graph of AlexNet's shape")
    parser.add_argument("--checkpoint-out", required=True, metavar="CKPT.h5", help="the checkpoint to write")
    parser.add_argument("--bgr", action="store_true", help="the network's input channels are BGR (Caffe's)")
    parser.add_argument("--mean", metavar="A,B,C", help="per-channel mean subtracted, in the network's channel "
                        "order and pixel units (Caffe's ImageNet models: 104,117,123 with --bgr)")
    parser.add_argument("--mean-image", metavar="STATS.h5", help="subtract the mean image of a converted "
                        "dataset's stats.h5 instead (refnet's own training convention)")
    parser.add_argument("--pixel-max", type=float, choices=(255.0, 1.0), default=None,
                        help="pixel range the network expects: 255 (0-255, default) or 1 (0-1)")
    parser.add_argument("--resize", type=int, default=None, metavar="S",
                        help="shorter side rescaled to S before the centre crop (default 256)")
    parser.add_argument("--classes", metavar="FILE", help="class names in the model's output order, one per "
                        "line (first word of each line: Caffe's synsets.txt or synset_words.txt)")


def read_class_file(path):
    """The first word of every non-empty line of `path`."""
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _preprocessing(args, network, metadata, mean_image):
    import json

    from ..onnx_io import META_PREPROCESSING
    from ..preprocess import Preprocessing, parse_mean

    crop = network["input_size"]
    given = args.bgr or args.mean or args.mean_image or args.pixel_max is not None or args.resize is not None
    if not given and META_PREPROCESSING in metadata:
        return Preprocessing.from_dict(json.loads(metadata[META_PREPROCESSING])), None
    if args.mean and args.mean_image:
        raise ValueError("--mean and --mean-image: give one")
    mean = "image" if args.mean_image else parse_mean(args.mean) if args.mean else (0.0, 0.0, 0.0)
    resize = args.resize or (mean_image.shape[0] if mean_image is not None else max(256, crop))
    preprocessing = Preprocessing(crop=crop, resize=resize, channels="BGR" if args.bgr else "RGB",
                                  pixel_max=args.pixel_max or 255.0, mean=mean)  # fmt: skip
    note = None if given else ("no input convention given or recorded: RGB, 0-255, nothing subtracted "
                               "(Caffe's models need --bgr --mean 104,117,123)")  # fmt: skip
    return preprocessing, note


def _mean_image(path):
    if not path:
        return None
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            image = np.ascontiguousarray(f["mean_image"][()], dtype=np.float32)
    except (OSError, KeyError) as exc:
        raise ValueError(f"--mean-image {path}: not a stats.h5 with a mean_image ({exc})") from None
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
        raise ValueError(f"--mean-image {path}: mean_image has shape {image.shape}, expected (S, S, 3)")
    return image


def run(args) -> int:
    import json

    import numpy as np

    from ..checkpoint import Checkpoint, CheckpointError, save_checkpoint
    from ..onnx_io import META_CLASSES, OnnxError, read_alexnet

    try:
        network, params, metadata, notes = read_alexnet(args.model)
        mean_image = _mean_image(args.mean_image)
        preprocessing, note = _preprocessing(args, network, metadata, mean_image)
        if args.classes:
            classes = read_class_file(args.classes)
        elif META_CLASSES in metadata:
            classes = json.loads(metadata[META_CLASSES])
        else:
            classes = [str(i) for i in range(network["num_classes"])]
            notes.append("no --classes FILE: classes are named by their index")
        if len(classes) != network["num_classes"]:
            raise ValueError(f"--classes {args.classes}: {len(classes)} classes, the model has {network['num_classes']}")
        if mean_image is not None and mean_image.shape[0] != preprocessing.resize:
            raise ValueError(f"--mean-image: {mean_image.shape[0]}x{mean_image.shape[0]}, but --resize is "
                             f"{preprocessing.resize}")  # fmt: skip
        config = {key: network[key] for key in ("variant", "num_classes", "input_size", "dropout")}
        config.update(seed=0, image_size=preprocessing.resize, imported_from=os.path.basename(args.model))
        zeros = {name: np.zeros_like(value) for name, value in params.items()}
        ckpt = Checkpoint(params=params, momentum=zeros, step=0, epoch=0, batch_in_epoch=0, config=config,
                          classes=classes, mean_image=mean_image, network=network,
                          preprocessing=preprocessing.to_dict())  # fmt: skip
        save_checkpoint(args.checkpoint_out, ckpt)
    except (OnnxError, CheckpointError, ValueError, OSError) as exc:
        print(f"refnet import: error: {exc}", file=sys.stderr)
        return 2
    for text in notes + ([note] if note else []):
        print(f"refnet import: note: {text}", file=sys.stderr)
    lrn = network["lrn"]
    print(f"{args.model}: AlexNet variant {network['variant']}, order {network['order']}, LRN size {lrn['size']} "
          f"alpha {lrn['alpha']:g} (not divided by size) beta {lrn['beta']:g} k {lrn['k']:g}, dropout "
          f"{network['dropout']:g}, input {network['input_size']}, {network['num_classes']} classes")  # fmt: skip
    print(f"preprocessing: {preprocessing.describe()}")
    print(f"wrote {args.checkpoint_out}")
    return 0
