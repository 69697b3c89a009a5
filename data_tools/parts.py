"""A conversion split across machines: `refnet convert ... --part I/K` on each, then `refnet convert
OUT --merge` once.

Every part lists the whole split (the same SRC, at the same path, with the same options) and makes
the same plan a one-part conversion makes: the same shuffled order and the same shard boundaries.
Part I of K then converts only the shards it owns, shard s for every s with s % K == I (round
robin: the parts get shard counts within one of each other, and none holds all the short shards
of the end). When all its shards are written it leaves in OUT/.convert/ (data_tools/state.py):

    <split>.part-I-of-K.json       its record: split, part, parts, options, classes, the plan digest
                                   of every shard of the split, the files the source scan skipped,
                                   the number of inputs, the images it converted, and for train
                                   the sha256 of
    train.part-I-of-K.sums.h5      its exact int64 pixel sums (data_tools/stats.py)

and no manifest.json or stats.h5. `--merge` reads the records, checks that all K parts of each
split are there and were planned from identical options and inputs, verifies every shard against
its sidecar and sha256, adds the pixel sums and writes stats.h5, then manifest.json (last): the
same files, byte for byte, as a one-part conversion. Merging again rewrites the same bytes.
"""

from __future__ import annotations

import os
import re

from .shards import MANIFEST_NAME, STATE_DIR, STATS_NAME, DatasetError, format_reasons, sha256_file

PART_SYNTAX = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_part(part) -> tuple[int, int]:
    """'I/K' (or a pair) -> (I, K) with K >= 1 and 0 <= I < K; DatasetError otherwise."""
    text = "/".join(str(v) for v in part) if isinstance(part, (tuple, list)) else str(part)
    match = PART_SYNTAX.match(text)
    if match:
        index, parts = int(match[1]), int(match[2])
        if 0 <= index < parts:
            return index, parts
    raise DatasetError(f"--part: expected i/k with 0 <= i < k, got {text!r}")


def owned_shards(n_shards: int, part: int, parts: int) -> list[int]:
    """The shard numbers part `part` of `parts` converts."""
    return list(range(part, n_shards, parts))


RECORD_KEYS = {"split", "part", "parts", "options", "classes", "plans", "source_skipped", "total", "images",
               "sums_sha256"}


def part_record(split, part, parts, options, classes, plans, source, images, sums_sha256) -> dict:
    return {"split": split, "part": part, "parts": parts, "options": options, "classes": classes,
            "plans": plans, "source_skipped": [list(pair) for pair in source.skipped], "total": source.total,
            "images": images, "sums_sha256": sums_sha256}


def merge(out: str, quiet: bool = False) -> dict:
    """Write OUT/stats.h5 and OUT/manifest.json from the finished parts in OUT/.convert; returns the
    manifest. DatasetError naming the part to rerun when a part is missing, differs or is damaged."""
    from .shards import FORMAT_VERSION, read_manifest, write_json_atomic
    from .stats import write_stats

    out = os.path.abspath(out)
    records = _read_records(out)
    existing = read_manifest(out) if os.path.isfile(os.path.join(out, MANIFEST_NAME)) else None
    merged = {split: _one_plan(out, split, parts) for split, parts in records.items()}
    first = merged[min(merged)]
    image_size, classes = first["options"]["image_size"], first["classes"]
    for split, record in merged.items():
        if record["classes"] != classes or record["options"]["image_size"] != image_size:
            raise DatasetError(f"the parts of {split} and {min(merged)} were made with different class lists or "
                               "image sizes: the val split must be converted with the train split's classes")
    kept = {}
    if existing:
        kept = {k: v for k, v in existing["splits"].items() if k not in merged}
        if kept and (existing["classes"] != classes or existing["image_size"] != image_size):
            raise DatasetError(f"{os.path.join(out, MANIFEST_NAME)} holds split(s) {', '.join(kept)} with another "
                               "class list or image size than the parts being merged")

    entries = {split: _merged_entry(out, split, record, quiet) for split, record in merged.items()}
    if "train" in merged:
        stats = _merged_sums(out, records["train"])
        if stats.images == 0:
            raise DatasetError(f"no train image could be converted (all {merged['train']['total']} skipped); "
                               f"see {os.path.join(out, STATE_DIR)} for the reasons")
        write_stats(os.path.join(out, STATS_NAME), stats.result())
    manifest = {"format_version": FORMAT_VERSION, "image_size": image_size, "classes": classes,
                "splits": dict(sorted({**kept, **entries}.items()))}
    write_json_atomic(os.path.join(out, MANIFEST_NAME), manifest)
    for split, entry in entries.items():
        print(f"merge: {split}: {entry['count']} images in {len(entry['shards'])} shards from "
              f"{merged[split]['parts']} parts, {len(entry['skipped'])} skipped "
              f"({format_reasons(s['reason'] for s in entry['skipped'])})")
    return manifest


def _read_records(out: str) -> dict:
    from .state import read_part_records

    if not os.path.isdir(out):
        raise DatasetError(f"OUT {out!r} does not exist: nothing to merge")
    records = read_part_records(out)
    if not records:
        raise DatasetError(f"{out} holds no finished part to merge (no {STATE_DIR}/<split>.part-I-of-K.json): "
                           "run `refnet convert OUT --train ... --part I/K` for every I first")
    return records


def _one_plan(out: str, split: str, parts: dict) -> dict:
    """The record every part of `split` agrees on; DatasetError naming the missing or differing part."""
    cuts = sorted({k for _, k in parts})
    if len(cuts) > 1:
        found = ", ".join(f"{i}/{k}" for i, k in sorted(parts, key=lambda p: (p[1], p[0])))
        raise DatasetError(f"{split}: {os.path.join(out, STATE_DIR)} holds parts of different splittings ({found}): "
                           "keep the records of one splitting and rerun its missing parts")
    k = cuts[0]
    missing = [f"{i}/{k}" for i in range(k) if (i, k) not in parts]
    if missing:
        raise DatasetError(f"{split}: part(s) {', '.join(missing)} missing (not finished, or not copied into "
                           f"{out}): run `refnet convert OUT ... --part I/{k}` for them with the same options, "
                           "then --merge again")
    for (i, _), record in sorted(parts.items()):
        if (not isinstance(record, dict) or not RECORD_KEYS <= record.keys()
                or (record["split"], record["part"], record["parts"]) != (split, i, k)):
            raise DatasetError(f"{split}: the record of part {i}/{k} is damaged or names another part: "
                               f"rerun part {i}/{k}")
    reference = parts[(0, k)]
    for (i, _), record in sorted(parts.items()):
        diffs = [f"{key} {reference['options'].get(key)!r} -> {record['options'].get(key)!r}"
                 for key in sorted(set(reference["options"]) | set(record["options"]))
                 if reference["options"].get(key) != record["options"].get(key)]
        if diffs:
            raise DatasetError(f"{split}: part {i}/{k} was made with other options than part 0/{k} "
                               f"({'; '.join(diffs)}): rerun the parts with identical options")
        if any(record[key] != reference[key] for key in ("classes", "plans", "source_skipped", "total")):
            raise DatasetError(f"{split}: part {i}/{k} was planned from other inputs than part 0/{k} (the files "
                               "under the source folder changed between the parts?): rerun every part")
    return reference


def _merged_entry(out: str, split: str, record: dict, quiet: bool) -> dict:
    """The split's manifest entry, every shard checked against its sidecar and sha256."""
    from tqdm import tqdm

    from .shards import shard_filename
    from .state import kept_shard, split_entry

    k = record["parts"]
    sidecars = []
    for index, plan in enumerate(tqdm(record["plans"], desc=f"merge {split}: checking shards", unit="shard",
                                      disable=quiet, leave=False)):
        sidecar = kept_shard(out, split, index, plan)
        if sidecar is None:
            owner = f"{index % k}/{k}"
            raise DatasetError(f"{split}: shard {shard_filename(split, index)} (part {owner}) is missing, damaged, "
                               f"or was made from other inputs: rerun part {owner}, then --merge again")
        sidecars.append(sidecar)
    return split_entry(split, sidecars, record["source_skipped"], record["total"])


def _merged_sums(out: str, parts: dict):
    from .state import part_sums_path
    from .stats import PixelStats

    total = None
    for (i, k), record in sorted(parts.items()):
        path = part_sums_path(out, "train", i, k)
        if not os.path.isfile(path) or sha256_file(path) != record.get("sums_sha256"):
            raise DatasetError(f"train: the pixel sums of part {i}/{k} ({path}) are missing or damaged: "
                               f"rerun part {i}/{k}, then --merge again")
        sums = PixelStats.load_sums(path)
        if total is None:
            total = sums
        else:
            total.add_sums(sums)
    return total
