"""The end-to-end demo (`make demo`): `refnet demo [--out DIR]`, DIR defaults to demo_out/.

1. draws an ImageNet-style folder of synthetic photos (refnet/synth.py: ten classes of shapes and
   textures, plus grayscale, CMYK, PNG and broken files) under DIR/images/{train,val}/<class>/;
2. converts it with `refnet convert` into DIR/data/ (the broken files are skipped with a reason);
3. trains AlexNet at a small input size on the CPU into DIR/run/ (`refnet train`'s loop);
4. evaluates the final network on the val split with the centre crop and the paper's 10-crop;
5. writes DIR/run/curves.png and DIR/report.json, and prints where everything is.

The settings below were chosen by measurement on the 2-core dev machine (see DEMO). Three depart
from the paper's recipe, because the demo has about 1,100 steps: `init="scaled"` (the paper's
N(0, 0.01) with biases of 1 kept the loss at ln 10 for hundreds of steps at input size 67, see
refnet/trainer.py scaled_init), no dropout (with 2,000 images and 18 epochs the network
underfits: train and val error stayed within a few points of each other) and a warmup of lr over
the first 2 epochs (early loss spikes killed some runs at chance; see DEMO).
"""

import json
import os
import shutil
import sys
import time

# Measured choices: images converted to 76 px, random 67 px crops (AlexNet's smallest input), 10
# classes. On the 2-core machine, lr 0.01: about 4.5 minutes end to end (warm Numba cache), 155
# training images/s, val top-1 error 24% (centre crop) / 21% (10-crop); lr 0.015: 21% / 19%;
# 36 epochs of 100 images per class at lr 0.01: 27% / 24%. With stripe and checker periods of
# 10-18 px (refnet/synth.py), lr 0.015: 17.0% / 15.0%. The result moves by several points with
# float32 rounding alone: after the CPU kernels changed their summation order (row-update GEMM,
# Winograd convolutions) the same settings gave 25.3% / 22.0% (24 epochs: 23.3% / 18.0%; lr 0.02:
# 23.0% / 18.7%). Texture periods of 14-24 px, lr 0.015: 20.7% / 20.0%; with lr 0.02: 19.3% /
# 17.3%. Then the register-tile GEMM changed the rounding again and lr 0.02 (seed 0) blew up at
# step 45 (loss 4.4) and stayed at chance. So the settings are now judged over three seeds (the
# seed also draws the images): lr 0.02 with a 2-epoch warmup, seed 0: 35% error; lr 0.015 with
# warmup: 16.3% / 16.0% (seed 0), 26.0% / 26.3% (seed 1); lr 0.01 (the paper's) with warmup:
# 13.7% / 11.3%, 13.3% / 13.0%, 13.3% / 11.0% (seeds 0, 1, 2), but 311 s for the whole demo from
# a cold Numba cache (about 30 s of compiling), over the 5 minutes. 18 epochs, lr / 10 after 13:
# 14.0% / 12.0%, 16.7% / 14.0%, 14.7% / 14.0% (seeds 0, 1, 2), 257-278 s with a warm cache (the
# machine's speed moved by 8% across those three runs): the settings below. Then conv2d's NT
# products went back to the dot-product GEMM (rounding again): 12.7% / 10.0%, 14.3% / 14.0%,
# 19.7% / 17.7% (seeds 0, 1, 2): seed 2 sits 0.3 points inside the 80% the issue asks for.
# From a fresh clone after that change the demo took 346.5 s from a cold Numba cache (about 60 s
# of it compiling, the dot-product GEMM now compiled beside the packed one; epochs at 133-155
# images/s against 165-178 an hour earlier): over the 5 minutes. 288.6 s before it; the
# same code from another fresh clone 20 minutes later: 271.8 s (the VM's speed, not the code).
# The weight gradient of the 3x3-output layers then moved to the packed GEMM (rounding again):
# 11.3% / 8.7%, 13.3% / 12.3%, 15.3% / 13.7% (seeds 0, 1, 2); the demo from a fresh clone took
# 316.0 s and, with the faster GEMM packing, 324.9 s from a cold Numba cache (75-79 s of it the
# first epoch, nearly all compiling; the VM ran slower in the second): still over the 5 minutes
# on this VM. 15 epochs (lr / 10 after 11) to save about 40 s: 16.3% / 15.0%, 21.3% / 18.0%,
# 17.0% / 15.7% (seeds 0, 1, 2): seed 1 under 80% accuracy, so not taken.
DEMO = {
    "train_per_class": 200,
    "val_per_class": 30,
    "image_size": 76,
    "input_size": 67,
    "epochs": 18,
    "batch_size": 32,
    "lr": 0.01,
    "lr_steps": [13],
    "warmup_epochs": 2,
    "dropout": 0.0,
    "init": "scaled",
    "seed": 0,
}
MARKER = ".refnet-demo"


def add_arguments(parser):
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output directory (default: demo_out/)")
    parser.add_argument("--epochs", type=int, default=DEMO["epochs"], help=f"training epochs (default: {DEMO['epochs']})")
    parser.add_argument("--train-per-class", type=int, default=DEMO["train_per_class"],
                        help=f"training images per class (default: {DEMO['train_per_class']})")
    parser.add_argument("--val-per-class", type=int, default=DEMO["val_per_class"],
                        help=f"validation images per class (default: {DEMO['val_per_class']})")
    parser.add_argument("--workers", type=int, default=0, help="threads / processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _prepare(out):
    """Create DIR, or clear the parts a previous demo wrote there; never touch a directory the demo did not make."""
    marker = os.path.join(out, MARKER)
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(marker):
        raise ValueError(f"--out {out}: the directory exists and was not written by `refnet demo`; choose another")
    for part in ("images", "data", "run", "report.json"):
        path = os.path.join(out, part)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    os.makedirs(out, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as f:
        f.write("written by `refnet demo`; it clears images/, data/, run/ and report.json here on its next run\n")


def _step(text):
    print(f"\n== {text}", flush=True)


def run(args) -> int:
    from ..cli import main as refnet_main

    out = args.out
    if args.epochs < 1 or args.train_per_class < 2 or args.val_per_class < 1:
        print("refnet demo: error: --epochs >= 1, --train-per-class >= 2 and --val-per-class >= 1 are needed", file=sys.stderr)
        return 2
    try:
        _prepare(out)
    except ValueError as exc:
        print(f"refnet demo: error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    images, data, run_dir = (os.path.join(out, part) for part in ("images", "data", "run"))

    _step(f"1/5 drawing synthetic photos into {images}/")
    from ..synth import CLASSES, write_image_folder

    t = time.perf_counter()
    written = write_image_folder(images, per_class={"train": args.train_per_class, "val": args.val_per_class},
                                 seed=DEMO["seed"])  # fmt: skip
    print(f"{written['train']['images']} train files (+{written['train']['broken']} broken ones) and "
          f"{written['val']['images']} val files in {len(CLASSES)} classes: {', '.join(CLASSES)} "
          f"({time.perf_counter() - t:.1f} s)")

    _step(f"2/5 refnet convert -> {data}/")
    convert_args = [data, "--train", os.path.join(images, "train"), "--val", os.path.join(images, "val"),
                    "--size", str(DEMO["image_size"])]  # fmt: skip
    if args.workers:
        convert_args += ["--workers", str(args.workers)]
    if args.quiet:
        convert_args.append("--quiet")
    t = time.perf_counter()
    status = refnet_main(["convert", *convert_args])
    convert_seconds = time.perf_counter() - t
    if status != 0:
        print(f"refnet demo: error: refnet convert failed with status {status}", file=sys.stderr)
        return status

    _step(f"3/5 training AlexNet ({DEMO['input_size']}x{DEMO['input_size']} crops, CPU) -> {run_dir}/")
    from ..trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        data=data, run_dir=run_dir, device="cpu", input_size=DEMO["input_size"], epochs=args.epochs,
        batch_size=DEMO["batch_size"], lr=DEMO["lr"], lr_steps=[s for s in DEMO["lr_steps"] if s < args.epochs],
        warmup_epochs=min(DEMO["warmup_epochs"], args.epochs),
        dropout=DEMO["dropout"], init=DEMO["init"], seed=DEMO["seed"], workers=args.workers, keep=1, log_every=5,
        progress=not args.quiet,
    )  # fmt: skip
    trainer = Trainer(cfg, resume=False)
    t = time.perf_counter()
    result = trainer.run()
    train_seconds = time.perf_counter() - t
    train_images = result["step"] * cfg.batch_size

    _step("4/5 evaluating on the val split: centre crop and 10-crop")
    from ..evaluate import evaluate, format_report

    reports = {}
    for name, ten_crop in (("centre crop", False), ("10-crop", True)):
        reports[name] = evaluate(trainer.net, trainer.val_set, crop=cfg.input_size, batch_size=100,
                                 ten_crop=ten_crop, progress=not args.quiet, desc=name)  # fmt: skip
        print(format_report(f"val {name}", reports[name], trainer.classes, pairs=3))

    _step("5/5 curves and report")
    from .plot import plot_curves, read_metrics

    curves = plot_curves(read_metrics(run_dir), os.path.join(run_dir, "curves.png"), title="refnet demo")
    centre, ten = reports["centre crop"], reports["10-crop"]
    report = {
        "val_top1_error": centre["top1_error"],
        "val_top5_error": centre["top5_error"],
        "ten_crop_top1_error": ten["top1_error"],
        "ten_crop_top5_error": ten["top5_error"],
        "val_top1_accuracy": 1.0 - centre["top1_error"],
        "val_images": centre["images"],
        "train_images": len(trainer.train_set),
        "classes": list(trainer.classes),
        "epochs": result["epoch"],
        "steps": result["step"],
        "train_seconds": train_seconds,
        "images_per_second": train_images / train_seconds,
        "convert_seconds": convert_seconds,
        "total_seconds": time.perf_counter() - started,
        "settings": dict(DEMO, epochs=args.epochs, train_per_class=args.train_per_class, val_per_class=args.val_per_class),
        "outputs": {"images": images, "data": data, "run": run_dir, "curves": curves,
                    "checkpoint": result["latest"], "metrics": os.path.join(run_dir, "metrics.jsonl")},
    }  # fmt: skip
    report_path = os.path.join(out, "report.json")
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)

    print(f"\nval top-1 accuracy {100 * report['val_top1_accuracy']:.1f}% (chance {100 / len(CLASSES):.0f}%), "
          f"top-1 error {100 * report['val_top1_error']:.1f}%, top-5 error {100 * report['val_top5_error']:.1f}%, "
          f"10-crop top-1 error {100 * report['ten_crop_top1_error']:.1f}%")
    print(f"trained {report['epochs']} epochs in {train_seconds:.1f} s ({report['images_per_second']:.1f} images/s); "
          f"whole demo {report['total_seconds']:.1f} s")
    print("outputs:")
    for label, path in (("sample images", images), ("converted shards", data), ("checkpoint", result["latest"]),
                        ("metrics", report["outputs"]["metrics"]), ("curves", curves), ("report", report_path)):
        print(f"  {label:<17} {path}")
    example = os.path.join(images, "val", CLASSES[0], f"{CLASSES[0]}_00000.JPEG")
    print(f"try: refnet predict --checkpoint {result['latest']} {example}")
    print(f"     refnet eval --checkpoint {result['latest']} --data {data} --ten-crop")
    return 0
