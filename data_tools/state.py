"""The converter's bookkeeping in OUT/.convert/: what a finished shard looks like, so a killed run
resumes, and which options each split was written with, so a different run does not mix with it.

    OUT/.convert/<split>.options.json   {format_version, image_size, shard_size, seed, compression,
                                         source, labels (absolute paths), classes_sha256}
    OUT/.convert/<split>-NNNNN.json     {file (null when every input was skipped), count, sha256,
                                         plan, skipped: [[path, reason]]}, written after the shard
                                         was renamed into place

`plan` is the sha256 of the chunk's (path, label) list and the options that change the bytes, so a
sidecar only vouches for a shard built from exactly the inputs the current run would use.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

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


def check_options(out: str, options: dict, manifest, overwrite: bool):
    """Refuse (DatasetError) to write a split over one made with other options, unless `overwrite`,
    which removes it first (every split when train is replaced). Records the new options and
    returns the manifest of what remains in OUT (None if nothing)."""
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
                           "Pass --overwrite to replace it, or choose another OUT")
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
                os.path.join(STATE_DIR, f"{split}.options.json")]
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            os.remove(path)


def remove_stale(out: str, split: str, n_chunks: int) -> None:
    """Delete unfinished `.tmp` shards and sidecars, and shards/sidecars numbered past the current plan."""
    for pattern in (f"{split}-*.h5.tmp", os.path.join(STATE_DIR, f"{split}-*.json.tmp")):
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            os.remove(path)
    for pattern in (f"{split}-*.h5", os.path.join(STATE_DIR, f"{split}-*.json")):
        for path in glob.glob(os.path.join(glob.escape(out), pattern)):
            number = os.path.basename(path).split("-", 1)[1].split(".", 1)[0]
            if number.isdigit() and int(number) >= n_chunks:
                os.remove(path)


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
