"""Reading and checking a converted dataset's manifest.json, stats.h5 and shard checksums.

The format (issue 3) is a contract between data_tools (the writer) and refnet.data (the reader):
    OUT/manifest.json  format_version, image_size, classes, and per split
                       under "splits": {split: {count, shards: [{file, count, sha256}], skipped}}
    OUT/<split>-NNNNN.h5, OUT/stats.h5 (see refnet/data/shards.py)

Checksums: hashing every shard on every open would read a 250 GB ImageNet conversion each time a
run starts, so a shard's sha256 is checked the first time it is seen and the result remembered in
a small JSON file keyed by the shard's absolute path, size and modification time
($REFNET_CACHE_DIR, default ~/.cache/refnet/verified_shards.json). A shard that is rewritten or
touched is hashed again; `verify=False` skips hashing; `refnet inspect --verify` rehashes all.
"""

import hashlib
import json
import os

import h5py
import numpy as np
from tqdm import tqdm

FORMAT_VERSION = 1
STATS_SHAPES = {"mean_rgb": (3,), "std_rgb": (3,), "eigval": (3,), "eigvec": (3, 3)}  # plus mean_image (S, S, 3)


def load_manifest(root):
    path = os.path.join(root, "manifest.json")
    if not os.path.isfile(path):
        raise ValueError(f"root: no manifest.json in {root!r} (convert the images first with `refnet convert`)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"root: cannot read {path!r}: {exc}") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is unknown, this reader reads format_version {FORMAT_VERSION}")
    for key in ("image_size", "classes", "splits"):
        if key not in manifest:
            raise ValueError(f"{path}: missing key {key!r}")
    return manifest


def split_entry(manifest, split, root):
    entry = manifest["splits"].get(split) if isinstance(split, str) else None
    if not isinstance(entry, dict) or "shards" not in entry:
        known = sorted(manifest["splits"])
        raise ValueError(f"split: {split!r} is not in {root!r}, which has splits {known}")
    return entry


def load_stats(root, image_size):
    path = os.path.join(root, "stats.h5")
    if not os.path.isfile(path):
        raise ValueError(f"root: no stats.h5 in {root!r} (it is written by converting the train split)")
    expected = dict(STATS_SHAPES, mean_image=(image_size, image_size, 3))
    stats = {}
    with h5py.File(path, "r") as f:
        for name, shape in expected.items():
            if name not in f:
                raise ValueError(f"{path}: missing dataset {name!r}")
            value = np.ascontiguousarray(f[name][()], dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{path}: {name} expected shape {shape}, got {value.shape}")
            stats[name] = value
    return stats


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_path():
    base = os.environ.get("REFNET_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "refnet")
    return os.path.join(base, "verified_shards.json")


def _read_cache(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # no cache (or a damaged one): everything is simply hashed again


def _write_cache(path, cache):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs re-hashing next time


def verify_checksums(paths_and_digests, *, progress=True):
    """Raise ValueError for the first shard whose sha256 differs from the manifest's.

    Shards already verified with the same path, size and mtime (see the module docstring) are
    skipped; the others are hashed behind a progress bar (a full ImageNet split takes minutes).
    """
    cache_path = _cache_path()
    cache = _read_cache(cache_path)
    todo = []
    for path, expected in paths_and_digests:
        st = os.stat(path)
        fingerprint = [st.st_size, st.st_mtime_ns, expected]
        if cache.get(os.path.abspath(path)) != fingerprint:
            todo.append((path, fingerprint))
    if not todo:
        return
    try:
        total = sum(fingerprint[0] for _, fingerprint in todo)
        with tqdm(total=total, desc="verifying shard checksums", unit="B", unit_scale=True, leave=False,
                  disable=not progress) as bar:
            for path, fingerprint in todo:
                actual = file_sha256(path)
                if actual != fingerprint[2]:
                    raise ValueError(
                        f"{path}: checksum mismatch, manifest sha256 {fingerprint[2]}, file sha256 {actual} "
                        "(the shard is damaged or was rewritten after the manifest; reconvert it)"
                    )
                cache[os.path.abspath(path)] = fingerprint
                bar.update(fingerprint[0])
    finally:
        _write_cache(cache_path, cache)  # what was verified stays verified, even after a mismatch
