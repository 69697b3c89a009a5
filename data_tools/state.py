"""The converter's bookkeeping in OUT/.convert/: what a finished shard looks like, so a killed run
resumes, and which options each split was written with, so a different run does not mix with it.

    OUT/.convert/<split>.options.json   {format_version, image_size, shard_size, seed, compression,
                                         source, labels (absolute paths), classes_sha256}
    OUT/.convert/<split>-NNNNN.json     {file (null when every input was skipped), count, sha256,
                                         plan, skipped: [[path, reason]]}, written after the shard
                                         was renamed into place
    OUT/.convert/<split>.part-I-of-K.json       written when part I of K (`--part I/K`) has finished
                                         all its shards: see data_tools/parts.py
    OUT/.convert/train.part-I-of-K.sums.h5      that part's exact pixel sums (data_tools/stats.py)

`plan` is the sha256 of the chunk's (path, label) list and the options that change the bytes, so a
sidecar only vouches for a shard built from exactly the inputs the current run would use.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re

from .shards import (FORMAT_VERSION, MANIFEST_NAME, SPLITS, STATE_DIR, STATS_NAME, DatasetError, read_json,
                     sha256_file, shard_filename, write_json_atomic)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def make_options(*, size, shard_size, seed, compression, source, labels, classes) -> dict:
    return {"format_version": FORMAT_VERSION, "image_size": size, "shard_size": shard_size, "seed": seed,
            "compression": compression, "source": os.path.abspath(source),
            "labels": os.path.abspath(labels) if labels else None, "classes_sha256": _digest(classes)}


def chunk_plan(options: dict, chunk: list) -> str:
    keys = ("format_version", "image_size", "compression")
    return _digest({"options": {k: options[k] for k in keys}, "items": [list(item) for item in chunk]})


def _options_path(out: str, split: str) -> str:
    return os.path.join(out, STATE_DIR, f"{split}.options.json")


def _sidecar_path(out: str, split: str, index: int) -> str:
    return os.path.join(out, STATE_DIR, shard_filename(split, index)[:-3] + ".json")


OVERWRITE_HINT = "Pass --overwrite to replace it, or choose another OUT"
PART_HINT = ("Remove it (--overwrite cannot be combined with --part) or choose another OUT, or give this part the "
             "options the other parts were given")


def check_options(out: str, options: dict, manifest, overwrite: bool, hint: str = OVERWRITE_HINT):
    """Refuse (DatasetError, ending with `hint`) to write a split over one made with other options,
    unless `overwrite`, which removes it first (every split when train is replaced). Records the new
    options and returns the manifest of what remains in OUT (None if nothing)."""
    conflicts = []
    for split, new in options.items():
        try:
            old = read_json(_options_path(out, split))
        except (OSError, ValueError):
            old = None
        if old is None:
            if manifest and split in manifest["splits"]:
                conflicts.append(f"{split} split written without a record of its options")
            continue
        diffs = [f"{key} {old.get(key)!r} -> {new[key]!r}" for key in new if old.get(key) != new[key]]
        if diffs:
            conflicts.append(f"{split} split ({'; '.join(diffs)})")
    if conflicts and not overwrite:
        raise DatasetError(f"{out} already holds output written with different options: {', '.join(conflicts)}. "
                           f"{hint}")
    if overwrite:
        for split in (SPLITS if "train" in options else options):
            _remove_split(out, split)
        if "train" in options:
            for name in (STATS_NAME, MANIFEST_NAME):
                if os.path.exists(os.path.join(out, name)):
                    os.remove(os.path.join(out, name))
            manifest = None
        elif manifest:
            manifest = dict(manifest, splits={k: v for k, v in manifest["splits"].items() if k not in options})
    os.makedirs(os.path.join(out, STATE_DIR), exist_ok=True)
    for split, new in options.items():
        write_json_atomic(_options_path(out, split), new)
    return manifest


def _remove_split(out: str, split: str) -> None:
    patterns = [f"{split}-*.h5", f"{split}-*.h5.tmp", os.path.join(STATE_DIR, f"{split}-*.json"),
                os.path.join(STATE_DIR, f"{split}.options.json"), os.path.join(STATE_DIR, f"{split}.part-*")]
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            os.remove(path)


def _remove_if_there(path: str) -> None:
    try:  # another part working in the same OUT may have removed it first
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_stale(out: str, split: str, n_chunks: int, owned=None) -> None:
    """Delete unfinished `.tmp` shards and sidecars, and shards/sidecars numbered past the current plan.

    With `owned` (the shard numbers of this part), only those shards' unfinished files are deleted:
    the other parts, maybe running at the same time in the same OUT, are writing theirs."""
    owned = None if owned is None else set(owned)
    for pattern in (f"{split}-*.h5.tmp", os.path.join(STATE_DIR, f"{split}-*.json*.tmp")):
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            number = _shard_number(path)
            if owned is None or number in owned:
                _remove_if_there(path)
    for pattern in (f"{split}-*.h5", os.path.join(STATE_DIR, f"{split}-*.json")):
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            number = _shard_number(path)
            if number is not None and number >= n_chunks:
                _remove_if_there(path)


def _shard_number(path: str):
    number = os.path.basename(path).split("-", 1)[1].split(".", 1)[0]
    return int(number) if number.isdigit() else None


def kept_shard(out: str, split: str, index: int, plan: str):
    """The sidecar of shard `index` if the shard on disk is complete and made from `plan`, else None."""
    try:
        sidecar = read_json(_sidecar_path(out, split, index))
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("plan") != plan:
        return None
    if sidecar.get("count") == 0:
        return sidecar
    path = os.path.join(out, sidecar.get("file") or "")
    if sidecar.get("file") != shard_filename(split, index) or not os.path.isfile(path):
        return None
    return sidecar if sha256_file(path) == sidecar.get("sha256") else None


def write_sidecar(out, split, index, file, count, digest, plan, skipped) -> dict:
    sidecar = {"file": file, "count": count, "sha256": digest, "plan": plan, "skipped": [list(s) for s in skipped]}
    write_json_atomic(_sidecar_path(out, split, index), sidecar)
    return sidecar


def split_entry(split: str, sidecars: list, source_skipped, total: int) -> dict:
    """The manifest entry of a split from the sidecars of all its shards (in shard order) and the
    files its source scan skipped; checks that every one of the `total` inputs is accounted for."""
    shards = [{"file": s["file"], "count": s["count"], "sha256": s["sha256"]} for s in sidecars if s["count"]]
    skipped = sorted([tuple(pair) for s in sidecars for pair in s["skipped"]]
                     + [tuple(pair) for pair in source_skipped])
    converted = sum(s["count"] for s in shards)
    if converted + len(skipped) != total:  # the no-file-lost invariant; a failure here is a bug
        raise AssertionError(f"{split}: {converted} converted + {len(skipped)} skipped != {total} inputs")
    return {"count": converted, "shards": shards, "skipped": [{"path": p, "reason": r} for p, r in skipped]}


PART_RECORD = re.compile(r"^(?P<split>[a-z]+)\.part-(?P<part>\d+)-of-(?P<parts>\d+)\.json$")


def part_record_path(out: str, split: str, part: int, parts: int) -> str:
    return os.path.join(out, STATE_DIR, f"{split}.part-{part}-of-{parts}.json")


def part_sums_path(out: str, split: str, part: int, parts: int) -> str:
    return os.path.join(out, STATE_DIR, f"{split}.part-{part}-of-{parts}.sums.h5")


def remove_part_records(out: str, split: str, part: int, parts: int) -> None:
    """Before part `part` of `parts` starts: its own record (it is redone) and the records of the
    split cut into another number of parts (an earlier plan, superseded) go."""
    for path in glob.glob(os.path.join(glob.escape(os.path.join(out, STATE_DIR)), f"{split}.part-*")):
        match = PART_RECORD.match(os.path.basename(path).replace(".sums.h5", ".json"))
        if match and (int(match["parts"]) != parts or int(match["part"]) == part):
            _remove_if_there(path)


def read_part_records(out: str) -> dict:
    """{split: {(part, parts): record}} of every finished part in OUT/.convert."""
    state_dir = os.path.join(out, STATE_DIR)
    records: dict = {}
    for name in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []:
        match = PART_RECORD.match(name)
        if not match:
            continue
        try:
            record = read_json(os.path.join(state_dir, name))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"part record {os.path.join(state_dir, name)} cannot be read ({exc}): "
                               "rerun that part") from None
        records.setdefault(match["split"], {})[(int(match["part"]), int(match["parts"]))] = record
    return records
