"""The on-disk format of a converted dataset (a contract: `refnet.data` and other tools read it).

    OUT/manifest.json          written last; {format_version, image_size, classes: [names in label order],
                               splits: {split: {count, shards: [{file, count, sha256}],
                                                skipped: [{path, reason}]}}}
    OUT/<split>-NNNNN.h5       one shard: `images` uint8 (n, size, size, 3), one image per chunk;
                               `labels` int32 (n,); `paths` utf-8 strings relative to the split's
                               source root; attributes format_version, split, image_size
    OUT/stats.h5               train pixel statistics (see data_tools/stats.py)
    OUT/.convert/              the converter's own bookkeeping: per-split options and a sidecar per
                               finished shard (sha256 and the digest of the plan it was written
                               from), which is what lets a killed conversion resume

A skipped file's reason reads "category" or "category: detail"; summaries group by the category.
Shard NNNNN holds the convertible images among inputs [NNNNN * shard_size, (NNNNN + 1) * shard_size)
of the split's shuffled input list, so a shard has fewer than shard_size images when some of its
inputs were skipped, and a shard whose inputs were all skipped is not written at all.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np

# One definition of the version and the checksum, shared with the reader.
from refnet.data.manifest import FORMAT_VERSION
from refnet.data.manifest import file_sha256 as sha256_file

MANIFEST_NAME = "manifest.json"
STATS_NAME = "stats.h5"
STATE_DIR = ".convert"
SPLITS = ("train", "val")


class DatasetError(Exception):
    """A problem with the user's inputs or a dataset on disk, worded for the user (no traceback)."""


def shard_filename(split: str, index: int) -> str:
    return f"{split}-{index:05d}.h5"


def reason_category(reason: str) -> str:
    return reason.split(":", 1)[0]


def format_reasons(reasons) -> str:
    """Skip reasons counted by category: "corrupt: 2, hidden: 1", or "none"."""
    counts: dict = {}
    for reason in reasons:
        counts[reason_category(reason)] = counts.get(reason_category(reason), 0) + 1
    return ", ".join(f"{category}: {n}" for category, n in sorted(counts.items())) or "none"


def write_json_atomic(path: str, obj) -> None:
    # The temporary name is unique to this process: parts of one conversion running at the same
    # time in a shared OUT all write OUT/.convert/<split>.options.json.
    tmp = f"{path}.{socket.gethostname()}-{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_manifest(out_dir: str) -> dict:
    """OUT/manifest.json, checked by the reader's own loader (refnet/data/manifest.py): DatasetError
    when missing, unreadable, of another format_version, or without its splits."""
    import glob

    from refnet.data.manifest import load_manifest

    if not os.path.isfile(os.path.join(out_dir, MANIFEST_NAME)) and glob.glob(
            os.path.join(glob.escape(os.path.join(out_dir, STATE_DIR)), "*.part-*-of-*.json")):
        raise DatasetError(f"no {MANIFEST_NAME} in {out_dir!r}, which holds parts of a conversion split with "
                           "--part: once every part is done, run `refnet convert OUT --merge`")
    try:
        manifest = load_manifest(out_dir)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if not isinstance(manifest.get("splits"), dict):
        raise DatasetError(f"{os.path.join(out_dir, MANIFEST_NAME)}: key 'splits' missing")
    return manifest


def shard_entries(out_dir: str, manifest: dict, split: str) -> list[dict]:
    """The split's shards as [{file (absolute path), count, sha256}]; DatasetError for an unknown split."""
    if split not in manifest["splits"]:
        known = ", ".join(manifest["splits"]) or "none"
        raise DatasetError(f"split {split!r} not in {out_dir} (splits: {known})")
    return [dict(entry, file=os.path.join(out_dir, entry["file"])) for entry in manifest["splits"][split]["shards"]]


class ShardWriter:
    """Writes one shard under `<final>.tmp`; `finish()` renames it into place and returns its sha256.

    Images are written one by one as they arrive (one HDF5 chunk each, so the reader can fetch any
    single image cheaply); labels and paths are small and written at the end.
    """

    def __init__(self, path: str, split: str, image_size: int, capacity: int, compression: str | None):
        import h5py

        self.path = path
        self.tmp_path = path + ".tmp"
        self.file = h5py.File(self.tmp_path, "w")
        self.file.attrs["format_version"] = np.int64(FORMAT_VERSION)
        self.file.attrs["split"] = split
        self.file.attrs["image_size"] = np.int64(image_size)
        self.images = self.file.create_dataset(
            "images", shape=(capacity, image_size, image_size, 3), maxshape=(None, image_size, image_size, 3),
            dtype=np.uint8, chunks=(1, image_size, image_size, 3), compression=compression, track_times=False)
        self.labels: list[int] = []
        self.paths: list[str] = []

    def add(self, image: np.ndarray, label: int, path: str) -> None:
        self.images[len(self.labels)] = image
        self.labels.append(label)
        self.paths.append(path)

    def finish(self) -> str:
        import h5py

        # Chunks past the last image were never written, so shrinking leaves no unused space.
        self.images.resize(len(self.labels), axis=0)
        self.file.create_dataset("labels", data=np.asarray(self.labels, np.int32), track_times=False)
        self.file.create_dataset("paths", data=self.paths, dtype=h5py.string_dtype("utf-8"), track_times=False)
        self.file.close()
        digest = sha256_file(self.tmp_path)
        with open(self.tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.path)
        return digest

    def abandon(self) -> None:
        self.file.close()
        os.remove(self.tmp_path)


def check_shard(path: str, split: str, image_size: int, count: int, n_classes: int) -> list[str]:
    """Problems found opening the shard and checking its datasets against the manifest (empty if none)."""
    import h5py

    problems = []
    try:
        with h5py.File(path, "r") as f:
            expected = {"images": ((count, image_size, image_size, 3), np.uint8),
                        "labels": ((count,), np.int32), "paths": ((count,), object)}
            for name, (shape, dtype) in expected.items():
                if name not in f:
                    problems.append(f"dataset {name!r} missing")
                    continue
                ds = f[name]
                if ds.shape != shape:
                    problems.append(f"{name} shape {ds.shape}, expected {shape}")
                if dtype is not object and ds.dtype != dtype:
                    problems.append(f"{name} dtype {ds.dtype}, expected {np.dtype(dtype)}")
            if "labels" in f and f["labels"].shape == (count,) and count:
                labels = f["labels"][()]
                if labels.min() < 0 or labels.max() >= n_classes:
                    problems.append(f"labels outside [0, {n_classes})")
            for key, value in (("format_version", FORMAT_VERSION), ("split", split), ("image_size", image_size)):
                if f.attrs.get(key) != value:
                    problems.append(f"attribute {key} is {f.attrs.get(key)!r}, expected {value!r}")
    except OSError as exc:
        problems.append(f"cannot be opened: {exc}")
    return problems
