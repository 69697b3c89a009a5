"""Convert ImageNet-style image folders into HDF5 shards (`refnet convert`, `python -m data_tools.convert`).

    refnet convert OUT --train TRAIN_DIR [--val VAL_DIR [--val-labels FILE]] [--size 256]
                   [--shard-size 1024] [--workers N] [--seed 0] [--compression none|lzf|gzip]
                   [--overwrite] [--quiet]

The format written is described in data_tools/shards.py, the preprocessing in
data_tools/preprocess.py, which files count and why some are skipped in data_tools/labels.py.

How a conversion survives crashes: each split's inputs are listed in sorted order, shuffled with
`--seed` and cut into chunks of `--shard-size`; shard NNNNN is chunk NNNNN's convertible images. A
shard is written under a `.tmp` name, renamed when complete, and then a sidecar
OUT/.convert/<split>-NNNNN.json records its sha256 and a digest of the chunk it came from (paths,
labels, size, compression). Rerunning the same command after a crash (kill -9 included) keeps every
shard whose sidecar matches the plan and whose bytes hash to the recorded sha256, redoes the rest,
and ends with the same files as an uninterrupted run. The options of each split are recorded in
OUT/.convert/<split>.options.json; a run with other options is refused unless `--overwrite`, which
removes the split first (all splits when the train split is replaced, since val labels depend on
its class list). manifest.json is written last, so a dataset without one is unfinished.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TASK_IMAGES = 8  # images per task handed to a worker: big enough to amortise the IPC, small enough to balance
SPLIT_SEED_OFFSET = {"train": 0, "val": 1}  # train and val shuffled with different streams of --seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output directory (created if missing)")
    parser.add_argument("--train", metavar="TRAIN_DIR", help="train images in class folders TRAIN_DIR/<class>/<images>")
    parser.add_argument("--val", metavar="VAL_DIR", help="val images, in class folders or flat with --val-labels "
                        "(alone: reuses the class list of OUT's train split)")
    parser.add_argument("--val-labels", metavar="FILE", help="CSV 'filename,class' or Kaggle's LOC_val_solution.csv for a flat VAL_DIR")
    parser.add_argument("--size", type=int, default=None, help="stored image side: shorter side rescaled to it, centre crop (default 256, or OUT's)")
    parser.add_argument("--shard-size", type=int, default=1024, help="input images per shard (default 1024)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffled storage order (default 0)")
    parser.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none", help="HDF5 compression of the images (default none)")
    parser.add_argument("--overwrite", action="store_true", help="replace an OUT written with different options")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or warnings (the summary line stays)")


def run(args: argparse.Namespace) -> int:
    from .shards import DatasetError

    try:
        convert(args.out, train=args.train, val=args.val, val_labels=args.val_labels, size=args.size,
                shard_size=args.shard_size, workers=args.workers, seed=args.seed,
                compression=args.compression, overwrite=args.overwrite, quiet=args.quiet)
    except DatasetError as exc:
        print(f"refnet convert: error: {exc}", file=sys.stderr)
        return 2
    return 0


def convert(out, *, train=None, val=None, val_labels=None, size=None, shard_size=1024, workers=None,
            seed=0, compression="none", overwrite=False, quiet=False) -> dict:
    """Convert the given splits into OUT; returns the manifest. Raises DatasetError for bad inputs."""
    from . import labels as label_sources
    from .shards import FORMAT_VERSION, MANIFEST_NAME, STATS_NAME, DatasetError, write_json_atomic
    from .state import check_options, make_options
    from .stats import PixelStats, write_stats
    from .workers import Decoder

    out = os.path.abspath(out)
    if not train and not val:
        raise DatasetError("nothing to convert: give --train TRAIN_DIR and/or --val VAL_DIR")
    if val_labels and not val:
        raise DatasetError("--val-labels needs --val VAL_DIR")
    for name, value in (("--shard-size", shard_size), ("--size", size if size is not None else 1),
                        ("--workers", workers if workers is not None else 1)):
        if value < 1:
            raise DatasetError(f"{name} must be at least 1, got {value}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise DatasetError(f"OUT {out!r} exists and is not a directory")
    existing = _existing_manifest(out, overwrite)

    if train:
        classes = label_sources.find_classes(train)
        size = size or 256
    else:
        if existing is None or "train" not in existing["splits"]:
            raise DatasetError(f"--val alone needs OUT {out!r} to hold a converted train split (its class list); "
                               "give --train as well")
        classes = list(existing["classes"])
        if size is not None and size != existing["image_size"]:
            raise DatasetError(f"--size {size} differs from the train split's image_size {existing['image_size']} in {out!r}")
        size = existing["image_size"]

    jobs = [("train", train, None)] if train else []
    jobs += [("val", val, val_labels)] if val else []
    sources = {}
    for split, src, lab in jobs:
        what = f"{split} source"
        if lab:
            sources[split] = label_sources.scan_labelled_folder(src, lab, classes, what)
        else:
            sources[split] = label_sources.scan_class_folders(src, classes, what)
        if sources[split].empty_classes and not quiet:
            names = ", ".join(sources[split].empty_classes[:5])
            print(f"warning: {split}: {len(sources[split].empty_classes)} class folder(s) hold no images: {names}",
                  file=sys.stderr)

    options = {split: make_options(size=size, shard_size=shard_size, seed=seed, compression=compression,
                                   source=src, labels=lab, classes=classes) for split, src, lab in jobs}
    os.makedirs(out, exist_ok=True)
    existing = check_options(out, options, existing, overwrite)  # only once the inputs are known good

    manifest = {"format_version": FORMAT_VERSION, "image_size": size, "classes": classes, "splits": {}}
    if existing:  # splits this run does not touch stay as they were
        manifest["splits"] = {k: v for k, v in existing["splits"].items() if k not in options}
    stats = PixelStats(size) if train else None
    decoder = Decoder(workers or _cpu_count(), size, TASK_IMAGES)
    try:
        for split, _, _ in jobs:
            manifest["splits"][split] = _convert_split(
                out, split, sources[split], options[split], decoder, stats if split == "train" else None, quiet)
    finally:
        decoder.close()
    if stats is not None:
        if stats.images == 0:
            raise DatasetError(f"no train image could be converted (all {sources['train'].total} skipped); see "
                               f"{os.path.join(out, '.convert')} for the reasons")
        write_stats(os.path.join(out, STATS_NAME), stats.result())
    manifest["splits"] = dict(sorted(manifest["splits"].items()))
    write_json_atomic(os.path.join(out, MANIFEST_NAME), manifest)
    return manifest


def _existing_manifest(out: str, overwrite: bool):
    from .shards import MANIFEST_NAME, DatasetError, read_manifest

    if not os.path.isfile(os.path.join(out, MANIFEST_NAME)):
        return None
    try:
        return read_manifest(out)
    except DatasetError:
        if overwrite:
            return None
        raise


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _convert_split(out, split, source, options, decoder, stats, quiet) -> dict:
    """Write (or keep, after a crash) the split's shards; returns its manifest entry."""
    import numpy as np

    from .shards import format_reasons
    from .state import chunk_plan, remove_stale

    started = time.perf_counter()
    order = np.random.default_rng([options["seed"], SPLIT_SEED_OFFSET[split]]).permutation(len(source.items))
    items = [source.items[i] for i in order]
    shard_size = options["shard_size"]
    chunks = [items[start:start + shard_size] for start in range(0, len(items), shard_size)]
    plans = [chunk_plan(options, chunk) for chunk in chunks]
    remove_stale(out, split, len(chunks))
    sidecars = _finished_shards(out, split, plans, stats, quiet)
    written_images, written_bytes = _write_shards(out, split, options, chunks, plans, sidecars, source.root,
                                                  decoder, stats, quiet)

    shards = [{"file": s["file"], "count": s["count"], "sha256": s["sha256"]} for s in sidecars if s["count"]]
    skipped = sorted([tuple(pair) for s in sidecars for pair in s["skipped"]] + list(source.skipped))
    converted = sum(s["count"] for s in shards)
    if converted + len(skipped) != source.total:  # the no-file-lost invariant; a failure here is a bug
        raise AssertionError(f"{split}: {converted} converted + {len(skipped)} skipped != {source.total} inputs")
    elapsed = time.perf_counter() - started
    total_bytes = sum(os.path.getsize(os.path.join(out, s["file"])) for s in shards)
    print(f"{split}: {converted} converted ({written_images} now, {converted - written_images} kept from an "
          f"earlier run), {len(skipped)} skipped ({format_reasons(r for _, r in skipped)}), "
          f"{written_images / max(elapsed, 1e-9):.1f} images/s, {written_bytes / 1e6:.1f} MB written, "
          f"{len(shards)} shards, {total_bytes / 1e6:.1f} MB in all")
    return {"count": converted, "shards": shards, "skipped": [{"path": p, "reason": r} for p, r in skipped]}


def _finished_shards(out, split, plans, stats, quiet) -> list:
    """Per planned shard, its sidecar when an earlier run finished it (verified), else None.

    The pixels of kept train shards are read back into `stats`, which then sums exactly what an
    uninterrupted run would have summed."""
    from tqdm import tqdm

    from .shards import STATE_DIR
    from .state import kept_shard

    state_dir = os.path.join(out, STATE_DIR)
    resuming = os.path.isdir(state_dir) and any(name.startswith(f"{split}-") for name in os.listdir(state_dir))
    sidecars = [None] * len(plans)
    with tqdm(total=len(plans), desc=f"{split}: checking finished shards", unit="shard",
              disable=quiet or not resuming, leave=False) as bar:
        for index, plan in enumerate(plans):
            sidecars[index] = kept_shard(out, split, index, plan)
            if sidecars[index] and stats is not None and sidecars[index]["count"]:
                _add_shard_to_stats(os.path.join(out, sidecars[index]["file"]), stats)
            bar.update(1)
    return sidecars


def _write_shards(out, split, options, chunks, plans, sidecars, root, decoder, stats, quiet) -> tuple[int, int]:
    """Convert every chunk without a sidecar into its shard (filling `sidecars` in); returns
    (images written, bytes written)."""
    from tqdm import tqdm

    from .shards import ShardWriter, shard_filename
    from .state import write_sidecar

    todo = [index for index, sidecar in enumerate(sidecars) if sidecar is None]
    kept_inputs = sum(len(chunk) for chunk, sidecar in zip(chunks, sidecars) if sidecar is not None)
    path_groups = ([os.path.join(root, rel) for rel, _ in chunks[index][start:start + TASK_IMAGES]]
                   for index in todo for start in range(0, len(chunks[index]), TASK_IMAGES))
    results = decoder.map(path_groups)
    compression = None if options["compression"] == "none" else options["compression"]
    written_images = written_bytes = 0
    total = sum(len(chunk) for chunk in chunks)
    with tqdm(total=total, initial=kept_inputs, desc=split, unit="img", disable=quiet, smoothing=0.1) as bar:
        for index in todo:
            name = shard_filename(split, index)
            writer = ShardWriter(os.path.join(out, name), split, options["image_size"], len(chunks[index]), compression)
            skipped = []
            for start in range(0, len(chunks[index]), TASK_IMAGES):
                group = chunks[index][start:start + TASK_IMAGES]
                for (rel, label), result in zip(group, next(results)):
                    if isinstance(result, str):
                        skipped.append((rel, result))
                        continue
                    writer.add(result, label, rel)
                    if stats is not None:
                        stats.add(result)
                bar.update(len(group))
            count = len(writer.labels)
            digest = writer.finish() if count else writer.abandon()
            written_images += count
            written_bytes += os.path.getsize(os.path.join(out, name)) if count else 0
            sidecars[index] = write_sidecar(out, split, index, name if count else None, count, digest,
                                            plans[index], skipped)
    return written_images, written_bytes


def _add_shard_to_stats(path: str, stats) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        images = f["images"]
        for i in range(images.shape[0]):
            stats.add(images[i])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_tools.convert", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
