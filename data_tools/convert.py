"""Convert ImageNet-style image folders into HDF5 shards (`refnet convert`, `python -m data_tools.convert`).

    refnet convert OUT --train TRAIN_DIR [--val VAL_DIR [--val-labels FILE]] [--classes FILE] [--size 256]
                   [--shard-size 1024] [--workers N] [--seed 0] [--compression none|lzf|gzip]
                   [--overwrite] [--quiet] [--part I/K]
    refnet convert OUT --merge [--quiet]

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

Splitting the work across machines (details in data_tools/parts.py): run the same command, with
the same SRC at the same path and the same options, once per part with `--part I/K` for I = 0 ..
K-1, then `refnet convert OUT --merge` once. Part I converts the shards s with s % K == I of every
split given (--train, --val, or both), under the same plan as a one-part run, and records what it
did in OUT/.convert/; it writes no manifest.json and no stats.h5. The parts may run at the same
time into one OUT on a shared filesystem, or into separate directories that are then copied into
one (hidden OUT/.convert included, e.g. `rsync -a OUT_I/ OUT/`). `--merge` checks that every part
is there, made with identical options and inputs, and that every shard matches its sha256 (it reads
the shards once), then writes stats.h5 from the parts' exact pixel sums and manifest.json last:
the same dataset, byte for byte, as a one-part conversion. A killed part resumes like any run;
merging twice writes the same bytes again. `--overwrite` is refused with `--part` (one part would
delete what another is writing): remove OUT to start over with other options.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TASK_IMAGES = 8  # images per task handed to a worker: big enough to amortise the IPC, small enough to balance
SPLIT_SEED_OFFSET = {"train": 0, "val": 1}  # train and val shuffled with different streams of --seed
# The command line's conversion options and their defaults (what --merge must not be given).
CONVERSION_DEFAULTS = {"train": None, "val": None, "val_labels": None, "classes": None, "size": None, "shard_size": 1024,
                       "workers": None, "seed": 0, "compression": "none", "overwrite": False, "part": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output directory (created if missing)")
    parser.add_argument("--train", metavar="TRAIN_DIR", help="train images in class folders TRAIN_DIR/<class>/<images>")
    parser.add_argument("--val", metavar="VAL_DIR", help="val images, in class folders or flat with --val-labels "
                        "(alone: reuses the class list of OUT's train split)")
    parser.add_argument("--val-labels", metavar="FILE", help="CSV 'filename,class' or Kaggle's LOC_val_solution.csv for a flat VAL_DIR")
    parser.add_argument("--classes", metavar="FILE", help="the class list in label order, one name per line (first word "
                        "of each line, e.g. Caffe's synsets.txt): a model's own order; lets --val convert alone")
    parser.add_argument("--size", type=int, default=None, help="stored image side: shorter side rescaled to it, centre crop (default 256, or OUT's)")
    parser.add_argument("--shard-size", type=int, default=CONVERSION_DEFAULTS["shard_size"],
                        help="input images per shard (default 1024)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=CONVERSION_DEFAULTS["seed"],
                        help="seed of the shuffled storage order (default 0)")
    parser.add_argument("--compression", choices=("none", "lzf", "gzip"), default=CONVERSION_DEFAULTS["compression"],
                        help="HDF5 compression of the images (default none)")
    parser.add_argument("--overwrite", action="store_true", help="replace an OUT written with different options")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or warnings (the summary line stays)")
    parser.add_argument("--part", metavar="I/K", help="convert only part I of K (shards s with s %% K == I), for "
                        "running on K machines; no manifest.json or stats.h5 until --merge")
    parser.add_argument("--merge", action="store_true", help="after all K parts: check them, write stats.h5 and "
                        "manifest.json (takes only OUT and --quiet)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("split across K machines (same SRC path and options everywhere; one shared OUT, or separate\n"
                     "OUTs copied into one with their hidden .convert/ folder before merging):\n"
                     "  machine I (I = 0..K-1):  refnet convert OUT --train TRAIN_DIR ... --part I/K\n"
                     "  then, once:              refnet convert OUT --merge\n"
                     "The result is the dataset a one-part conversion writes, byte for byte.")


def run(args: argparse.Namespace) -> int:
    from .shards import DatasetError

    try:
        if args.merge:
            from .parts import merge

            given = [f"--{name.replace('_', '-')}" for name, default in CONVERSION_DEFAULTS.items()
                     if getattr(args, name) != default]
            if given:
                raise DatasetError(f"--merge takes the options from the parts it merges: drop {', '.join(given)}")
            merge(args.out, quiet=args.quiet)
        else:
            convert(args.out, train=args.train, val=args.val, val_labels=args.val_labels, classes=args.classes,
                    size=args.size,
                    shard_size=args.shard_size, workers=args.workers, seed=args.seed,
                    compression=args.compression, overwrite=args.overwrite, quiet=args.quiet, part=args.part)
    except DatasetError as exc:
        print(f"refnet convert: error: {exc}", file=sys.stderr)
        return 2
    return 0


def convert(out, *, train=None, val=None, val_labels=None, classes=None, size=None, shard_size=1024, workers=None,
            seed=0, compression="none", overwrite=False, quiet=False, part=None) -> dict:
    """Convert the given splits into OUT; returns the manifest. Raises DatasetError for bad inputs.

    `classes`: a class-list file (label_sources.read_class_list) fixing the labels' order instead
    of the train split's sorted folder names; with it a val split converts without a train split
    (and without stats.h5, which only a train split gives).

    With `part` ("I/K" or (I, K)) only that part's shards are converted, nothing is merged, and the
    result is {split: the part's record} (see data_tools/parts.py)."""
    from . import labels as label_sources
    from .parts import parse_part
    from .shards import FORMAT_VERSION, MANIFEST_NAME, STATS_NAME, DatasetError, write_json_atomic
    from .state import OVERWRITE_HINT, PART_HINT, check_options, make_options
    from .stats import PixelStats, write_stats
    from .workers import Decoder

    out = os.path.abspath(out)
    if part is not None:
        part = parse_part(part)
        if overwrite:
            raise DatasetError("--overwrite cannot be combined with --part: the parts of a conversion may run at "
                               "the same time in OUT and one would delete what another is writing; remove OUT "
                               "(or choose another) and run the parts again")
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

    class_file, classes = classes, (label_sources.read_class_list(classes) if classes else None)
    if classes is not None and existing is not None and list(existing["classes"]) != classes:
        raise DatasetError(f"--classes {class_file}: differs from the class list of {out!r}; use --overwrite or another OUT")
    if train:
        classes = classes or label_sources.find_classes(train)
        size = size or 256
    elif classes is not None:
        size = size or (existing["image_size"] if existing else 256)
        if existing is not None and size != existing["image_size"]:
            raise DatasetError(f"--size {size} differs from the image_size {existing['image_size']} in {out!r}")
    else:
        if existing is None or "train" not in existing["splits"]:
            raise DatasetError(f"--val alone needs OUT {out!r} to hold a converted train split (its class list); "
                               "give --train as well, or the class list with --classes FILE")
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
    existing = check_options(out, options, existing, overwrite,  # only once the inputs are known good
                             OVERWRITE_HINT if part is None else PART_HINT)

    manifest = {"format_version": FORMAT_VERSION, "image_size": size, "classes": classes, "splits": {}}
    if existing:  # splits this run does not touch stay as they were
        manifest["splits"] = {k: v for k, v in existing["splits"].items() if k not in options}
    stats = PixelStats(size) if train else None
    decoder = Decoder(workers or _cpu_count(), size, TASK_IMAGES)
    try:
        results = {split: _convert_split(out, split, sources[split], options[split], classes, decoder,
                                         stats if split == "train" else None, quiet, part)
                   for split, _, _ in jobs}
    finally:
        decoder.close()
    if part is not None:
        return results  # the parts' records; --merge writes stats.h5 and manifest.json
    manifest["splits"].update(results)
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


def _convert_split(out, split, source, options, classes, decoder, stats, quiet, part) -> dict:
    """Write (or keep, after a crash) the split's shards, or with `part` (I, K) part I's share of
    them; returns its manifest entry, or the part's record."""
    import numpy as np

    from .parts import owned_shards, part_record
    from .shards import format_reasons, sha256_file, write_json_atomic
    from .state import chunk_plan, part_record_path, part_sums_path, remove_part_records, remove_stale, split_entry

    started = time.perf_counter()
    order = np.random.default_rng([options["seed"], SPLIT_SEED_OFFSET[split]]).permutation(len(source.items))
    items = [source.items[i] for i in order]
    shard_size = options["shard_size"]
    chunks = [items[start:start + shard_size] for start in range(0, len(items), shard_size)]
    plans = [chunk_plan(options, chunk) for chunk in chunks]
    owned = owned_shards(len(chunks), *part) if part else list(range(len(chunks)))
    if part:
        remove_part_records(out, split, *part)
    remove_stale(out, split, len(chunks), owned if part else None)
    sidecars = _finished_shards(out, split, plans, owned, stats, quiet)
    written_images, written_bytes = _write_shards(out, split, options, chunks, plans, owned, sidecars, source.root,
                                                  decoder, stats, quiet)

    mine = [sidecars[index] for index in owned]
    converted = sum(s["count"] for s in mine)
    skipped = [reason for s in mine for _, reason in s["skipped"]]
    entry = None
    if part is None:
        entry = split_entry(split, sidecars, source.skipped, source.total)
        skipped = [s["reason"] for s in entry["skipped"]]
    elapsed = time.perf_counter() - started
    total_bytes = sum(os.path.getsize(os.path.join(out, s["file"])) for s in mine if s["count"])
    print(f"{split}{' part %d/%d' % part if part else ''}: {converted} converted ({written_images} now, "
          f"{converted - written_images} kept from an earlier run), {len(skipped)} skipped "
          f"({format_reasons(skipped)}), {written_images / max(elapsed, 1e-9):.1f} images/s, "
          f"{written_bytes / 1e6:.1f} MB written, {sum(1 for s in mine if s['count'])} shards, "
          f"{total_bytes / 1e6:.1f} MB in all")
    if part is None:
        return entry
    sums_sha256 = None
    if stats is not None:
        stats.save_sums(part_sums_path(out, split, *part))
        sums_sha256 = sha256_file(part_sums_path(out, split, *part))
    record = part_record(split, *part, options, classes, plans, source, converted, sums_sha256)
    write_json_atomic(part_record_path(out, split, *part), record)  # last: the part is finished
    return record


def _finished_shards(out, split, plans, owned, stats, quiet) -> list:
    """Per planned shard, its sidecar when an earlier run finished it (verified), else None; only
    the `owned` shards are looked at.

    The pixels of kept train shards are read back into `stats`, which then sums exactly what an
    uninterrupted run would have summed."""
    from tqdm import tqdm

    from .shards import STATE_DIR
    from .state import kept_shard

    state_dir = os.path.join(out, STATE_DIR)
    resuming = os.path.isdir(state_dir) and any(name.startswith(f"{split}-") for name in os.listdir(state_dir))
    sidecars = [None] * len(plans)
    with tqdm(total=len(owned), desc=f"{split}: checking finished shards", unit="shard",
              disable=quiet or not resuming, leave=False) as bar:
        for index in owned:
            sidecars[index] = kept_shard(out, split, index, plans[index])
            if sidecars[index] and stats is not None and sidecars[index]["count"]:
                _add_shard_to_stats(os.path.join(out, sidecars[index]["file"]), stats)
            bar.update(1)
    return sidecars


def _write_shards(out, split, options, chunks, plans, owned, sidecars, root, decoder, stats, quiet) -> tuple[int, int]:
    """Convert every owned chunk without a sidecar into its shard (filling `sidecars` in); returns
    (images written, bytes written)."""
    from tqdm import tqdm

    from .shards import ShardWriter, shard_filename
    from .state import write_sidecar

    todo = [index for index in owned if sidecars[index] is None]
    kept_inputs = sum(len(chunks[index]) for index in owned if sidecars[index] is not None)
    path_groups = ([os.path.join(root, rel) for rel, _ in chunks[index][start:start + TASK_IMAGES]]
                   for index in todo for start in range(0, len(chunks[index]), TASK_IMAGES))
    results = decoder.map(path_groups)
    compression = None if options["compression"] == "none" else options["compression"]
    written_images = written_bytes = 0
    total = sum(len(chunks[index]) for index in owned)
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
