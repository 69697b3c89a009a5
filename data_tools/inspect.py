"""Describe a converted dataset; `--verify` rehashes and checks every shard; `--show N` draws a contact sheet.

    refnet inspect OUT [--verify] [--show N [--out PNG] [--split SPLIT] [--seed S]]

Prints the image size, the classes, and per split the image count, shards and skipped files grouped
by reason. `--verify` recomputes every shard's sha256 against manifest.json and opens each shard to
check its datasets' shapes, dtypes, attributes and label range (exit status 1 if anything is wrong).
`--show N` writes a PNG grid of N random stored images, each captioned with its class name.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="a directory written by `refnet convert`")
    parser.add_argument("--verify", action="store_true", help="recompute every checksum and check every shard's contents")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="write a contact sheet of N random images")
    parser.add_argument("--out", dest="sheet", metavar="PNG", help="contact sheet path (default OUT/contact_sheet.png)")
    parser.add_argument("--split", default=None, help="split to draw the contact sheet from (default train, else the first)")
    parser.add_argument("--seed", type=int, default=0, help="which random images the contact sheet shows")


def run(args: argparse.Namespace) -> int:
    from .shards import DatasetError

    try:
        if args.show < 0:
            raise DatasetError(f"--show must be a number of images >= 0, got {args.show}")
        manifest = describe(args.out)
        ok = verify(args.out, manifest) if args.verify else True
        if args.show:
            path = args.sheet or os.path.join(args.out, "contact_sheet.png")
            contact_sheet(args.out, manifest, args.show, path, split=args.split, seed=args.seed)
            print(f"contact sheet: {path}")
    except DatasetError as exc:
        print(f"refnet inspect: error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def describe(out: str) -> dict:
    """Print the summary of OUT; returns its manifest."""
    from .shards import format_reasons, read_manifest

    manifest = read_manifest(out)
    classes = manifest["classes"]
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    print(f"{out}: format_version {manifest['format_version']}, images {manifest['image_size']}x{manifest['image_size']}x3 uint8")
    print(f"classes: {len(classes)} ({shown})")
    for split, entry in manifest["splits"].items():
        reasons = format_reasons(item["reason"] for item in entry["skipped"])
        size = sum(os.path.getsize(os.path.join(out, s["file"])) for s in entry["shards"]
                   if os.path.isfile(os.path.join(out, s["file"])))
        print(f"{split}: {entry['count']} images in {len(entry['shards'])} shards ({size / 1e6:.1f} MB), "
              f"{len(entry['skipped'])} skipped ({reasons})")
    return manifest


def verify(out: str, manifest: dict) -> bool:
    """Rehash and check every shard of every split; prints each problem, returns True when none."""
    from tqdm import tqdm

    from .shards import check_shard, sha256_file, shard_entries

    problems = []
    entries = [(split, entry) for split in manifest["splits"] for entry in shard_entries(out, manifest, split)]
    for split, entry in tqdm(entries, desc="verifying", unit="shard", leave=False):
        name = os.path.basename(entry["file"])
        if not os.path.isfile(entry["file"]):
            problems.append(f"{name}: missing")
            continue
        if sha256_file(entry["file"]) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest's (damaged or rewritten)")
        problems += [f"{name}: {p}" for p in check_shard(entry["file"], split, manifest["image_size"],
                                                          entry["count"], len(manifest["classes"]))]
    counted = {split: sum(s["count"] for s in e["shards"]) for split, e in manifest["splits"].items()}
    problems += [f"{split}: count {manifest['splits'][split]['count']} != sum of shard counts {n}"
                 for split, n in counted.items() if n != manifest["splits"][split]["count"]]
    problems += _check_stats(out, manifest)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"verify: {len(entries)} shards, {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return not problems


def _check_stats(out: str, manifest: dict) -> list[str]:
    from .stats import STATS_KEYS, read_stats

    path = os.path.join(out, "stats.h5")
    if "train" not in manifest["splits"]:
        return []
    if not os.path.isfile(path):
        return ["stats.h5 missing"]
    size = manifest["image_size"]
    shapes = {"mean_image": (size, size, 3), "mean_rgb": (3,), "std_rgb": (3,), "eigval": (3,), "eigvec": (3, 3)}
    try:
        stats = read_stats(path)
    except (OSError, KeyError) as exc:
        return [f"stats.h5 cannot be read: {exc}"]
    return [f"stats.h5: {key} shape {stats[key].shape}, expected {shapes[key]}"
            for key in STATS_KEYS if stats[key].shape != shapes[key]]


def contact_sheet(out: str, manifest: dict, n: int, path: str, *, split=None, seed=0, columns=None) -> str:
    """Write a PNG grid of `n` random images of `split`, each captioned with its class name."""
    import h5py
    import numpy as np
    from PIL import Image, ImageDraw

    from .shards import DatasetError, shard_entries

    split = split or ("train" if "train" in manifest["splits"] else next(iter(manifest["splits"]), None))
    if split is None:
        raise DatasetError(f"{out} holds no split to show")
    entries = shard_entries(out, manifest, split)
    total = sum(e["count"] for e in entries)
    if total == 0:
        raise DatasetError(f"split {split!r} holds no images")
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    starts = np.cumsum([0] + [e["count"] for e in entries])
    size = manifest["image_size"]
    tile = max(size, 96)
    caption = 14
    columns = columns or int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for slot, index in enumerate(picks):
        shard = int(np.searchsorted(starts, index, side="right") - 1)
        with h5py.File(entries[shard]["file"], "r") as f:
            image = f["images"][index - starts[shard]]
            label = int(f["labels"][index - starts[shard]])
        x, y = (slot % columns) * tile, (slot // columns) * (tile + caption)
        sheet.paste(Image.fromarray(image).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        name = manifest["classes"][label] if 0 <= label < len(manifest["classes"]) else f"label {label}?"
        draw.text((x + 2, y + tile + 1), name[: tile // 6], fill="black")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sheet.save(path)
    return path
