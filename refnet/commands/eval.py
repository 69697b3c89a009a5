"""Evaluate a checkpoint: `refnet eval --checkpoint CKPT --data OUT [--split val] [--ten-crop]`.

Top-1 and top-5 error with the centre crop, and (--ten-crop) with the paper's 10-crop test (see
refnet/evaluate.py), and the most confused class pairs (true class -> predicted class).
"""

import json
import sys

from ..evaluate import evaluate, format_report, most_confused_pairs, network_from_checkpoint, prepare_dataset


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by `refnet train`")
    parser.add_argument("--data", required=True, metavar="OUT", help="a directory written by `refnet convert`")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--ten-crop", action="store_true", help="also report the paper's 10-crop averaged error")
    parser.add_argument("--batch-size", type=int, default=128, help="crops per forward pass (default: 128)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the network runs")
    parser.add_argument("--pairs", type=int, default=10, help="how many confused class pairs to list (default: 10)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def run(args) -> int:
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..data import ShardDataset
    from ..trainer import check_device

    try:
        check_device(args.device)
        ckpt = load_checkpoint(args.checkpoint)
        dataset = ShardDataset(args.data, args.split, require_stats=False)
        preprocessing = prepare_dataset(ckpt, dataset)
    except (CheckpointError, ValueError, RuntimeError) as exc:
        print(f"refnet eval: error: {exc}", file=sys.stderr)
        return 2
    if len(dataset.classes) != ckpt.network["num_classes"]:
        print(f"refnet eval: error: {args.data} has {len(dataset.classes)} classes, the checkpoint was trained on "
              f"{ckpt.network['num_classes']}", file=sys.stderr)
        return 2
    if ckpt.classes and list(ckpt.classes) != list(dataset.classes):
        print(f"refnet eval: error: {args.data} lists its classes in another order than the checkpoint (convert "
              f"with --classes FILE in the model's order)", file=sys.stderr)
        return 2
    net = network_from_checkpoint(ckpt, args.device)
    crop = preprocessing.crop
    results = {}
    modes = [("centre crop", False)] + ([("10-crop", True)] if args.ten_crop else [])
    for name, ten_crop in modes:
        result = evaluate(net, dataset, crop=crop, batch_size=args.batch_size, ten_crop=ten_crop, progress=True, desc=name,
                          preprocessing=preprocessing)
        print(format_report(f"{args.split} {name}", result, dataset.classes, args.pairs))
        results[name] = result
    if args.json:
        payload = {
            name: dict({k: v for k, v in r.items() if k != "confusion"},
                       confused_pairs=most_confused_pairs(r["confusion"], dataset.classes, args.pairs))
            for name, r in results.items()
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
    return 0
